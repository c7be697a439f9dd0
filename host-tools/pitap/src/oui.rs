//! The vendor of a MAC address from its IEEE OUI (the first three bytes),
//! from the registry compressed into the collector at build time
//! (`build.rs`). Locally administered and group addresses have none.

use std::sync::OnceLock;

static PACKED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/oui.bin"));

struct Table {
    prefixes: Vec<[u8; 3]>,
    vendor: Vec<u16>,
    names: Vec<&'static str>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let empty = Table {
            prefixes: Vec::new(),
            vendor: Vec::new(),
            names: Vec::new(),
        };
        let Ok(raw) = miniz_oxide::inflate::decompress_to_vec(PACKED) else {
            return empty;
        };
        let Some(count) = raw
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        else {
            return empty;
        };
        let end = 4 + count as usize * 5;
        let Some(entries) = raw.get(4..end) else {
            return empty;
        };
        let names: &'static str = match std::str::from_utf8(&raw[end..]) {
            Ok(s) => Box::leak(s.to_string().into_boxed_str()),
            Err(_) => return empty,
        };
        Table {
            prefixes: entries.chunks(5).map(|e| [e[0], e[1], e[2]]).collect(),
            vendor: entries
                .chunks(5)
                .map(|e| u16::from_le_bytes([e[3], e[4]]))
                .collect(),
            names: names.split('\n').collect(),
        }
    })
}

/// The registered vendor of `mac`, if its prefix is in the registry.
pub fn vendor(mac: &[u8; 6]) -> Option<&'static str> {
    // Group (multicast) and locally administered addresses are no OUI's.
    if mac[0] & 0x03 != 0 {
        return None;
    }
    let t = table();
    let i = t.prefixes.binary_search(&[mac[0], mac[1], mac[2]]).ok()?;
    t.names.get(usize::from(*t.vendor.get(i)?)).copied()
}

/// How many prefixes the registry built in holds.
pub fn prefixes() -> usize {
    table().prefixes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendors_by_prefix() {
        assert!(
            prefixes() > 30_000,
            "the registry is built in ({})",
            prefixes()
        );
        // 00:0c:29 is VMware's, in every edition of the registry.
        assert_eq!(vendor(&[0x00, 0x0c, 0x29, 1, 2, 3]), Some("VMware, Inc."));
        assert_eq!(
            vendor(&[0x02, 0x0c, 0x29, 1, 2, 3]),
            None,
            "locally administered"
        );
        assert_eq!(vendor(&[0x01, 0x00, 0x5e, 0, 0, 1]), None, "multicast");
    }
}
