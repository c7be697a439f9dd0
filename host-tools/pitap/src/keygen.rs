//! `pitap keygen`: a fresh key and the two configuration snippets that use
//! it, one for the tap and one for the collector.

use std::io::Read;
use std::path::Path;

use pitap_wire::envelope::Key;

pub fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(bytes)
}

pub struct Snippets {
    pub tap: String,
    pub collector: String,
}

pub fn snippets(tap_id: &str, collector: &str, key: &Key) -> Snippets {
    let hex = key.to_hex();
    Snippets {
        tap: format!(
            "# pitap.toml of tap {tap_id:?} (keep it secret)\n[tap]\nid = \"{tap_id}\"\n\n[uplink]\ncollector = \"{collector}\"\nkey = \"{hex}\"\n"
        ),
        collector: format!(
            "# collector.toml: add to [taps] (keep it secret)\n[taps.\"{tap_id}\"]\nkey = \"{hex}\"\n"
        ),
    }
}

pub fn run(tap_id: &str, collector: &str, out_dir: Option<&Path>) -> Result<(), String> {
    if tap_id.is_empty() || tap_id.len() > pitap_wire::codec::MAX_TAP_ID || tap_id.contains('"') {
        return Err("--tap-id: 1 to 32 bytes, no quotes".into());
    }
    let key = Key::from_bytes(random_bytes::<32>()?);
    let s = snippets(tap_id, collector, &key);
    match out_dir {
        None => {
            println!("{}\n{}", s.tap, s.collector);
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for (name, text) in [
                (format!("{tap_id}.tap.toml"), &s.tap),
                (format!("{tap_id}.collector.toml"), &s.collector),
            ] {
                let path = dir.join(name);
                write_private(&path, text)?;
                println!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}

/// Writes a file only its owner can read (it holds a key).
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CollectorConfig;

    #[test]
    fn both_snippets_parse_and_share_the_key() {
        let key = Key::from_bytes([9; 32]);
        let s = snippets("rack3", "192.0.2.10:4739", &key);
        let collector = CollectorConfig::parse(&s.collector).unwrap();
        assert_eq!(collector.keys().unwrap()["rack3"], key);
        assert!(s.tap.contains(&format!("key = \"{}\"", key.to_hex())));
        assert!(s.tap.contains("collector = \"192.0.2.10:4739\""));
    }
}
