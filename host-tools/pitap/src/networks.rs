//! Named networks from collector.toml and the fields they give a flow, the
//! way Graylog pipeline rules use `cidr_match`: `from_internal` and
//! `to_internal` (is the initiator / responder inside the `internal`
//! networks) and `src_group` / `dst_group` (the most specific named network
//! holding the address; `internal` only when no other name matches).
//! Computed when a flow is read, from the collector.toml in use: a network
//! defined after the flows were collected applies to them. A CIDR match is
//! ten lines; no crate needed.

use std::collections::BTreeMap;
use std::net::IpAddr;

use pitap_wire::FlowRecord;

/// An address block: `172.30.0.0/16`, `2001:db8::/32`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an address or ADDRESS/PREFIX"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix must be 0 to {max}"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, addr: &IpAddr) -> bool {
        fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
            if prefix == 0 {
                0
            } else {
                bits >> (width - prefix)
            }
        }
        match (self.addr, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                masked(u32::from(net).into(), self.prefix, 32)
                    == masked(u32::from(*a).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                masked(u128::from(net), self.prefix, 128)
                    == masked(u128::from(*a), self.prefix, 128)
            }
            // An IPv4 address seen as ::ffff:a.b.c.d matches its IPv4 block.
            (IpAddr::V4(_), IpAddr::V6(a)) => a
                .to_ipv4_mapped()
                .is_some_and(|v4| self.contains(&IpAddr::V4(v4))),
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The fields named networks (and GeoIP, when configured) add to a flow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Enrichment {
    pub from_internal: bool,
    pub to_internal: bool,
    pub src_group: Option<String>,
    pub dst_group: Option<String>,
    pub src_country: Option<String>,
    pub dst_country: Option<String>,
    pub src_asn: Option<u32>,
    pub dst_asn: Option<u32>,
}

/// The `[networks]` table: name -> blocks. `internal` is the one name with
/// a meaning of its own.
#[derive(Clone, Debug, Default)]
pub struct Networks {
    named: Vec<(String, Vec<Cidr>)>,
    /// Country and AS of addresses, from `[geoip]`.
    geoip: Option<std::sync::Arc<crate::geoip::GeoIp>>,
}

pub const INTERNAL: &str = "internal";

impl Networks {
    pub fn from_config(table: &BTreeMap<String, Vec<String>>) -> Result<Networks, String> {
        let mut named = Vec::new();
        for (name, blocks) in table {
            let cidrs = blocks
                .iter()
                .map(|b| Cidr::parse(b).map_err(|e| format!("networks.{name}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            named.push((name.clone(), cidrs));
        }
        Ok(Networks { named, geoip: None })
    }

    /// These networks with GeoIP databases beside them.
    pub fn with_geoip(mut self, geoip: Option<crate::geoip::GeoIp>) -> Networks {
        self.geoip = geoip.map(std::sync::Arc::new);
        self
    }

    pub fn geoip(&self) -> Option<&crate::geoip::GeoIp> {
        self.geoip.as_deref()
    }

    /// A country database is there (the web UI's maps need one).
    pub fn has_countries(&self) -> bool {
        self.geoip().is_some_and(crate::geoip::GeoIp::has_country)
    }

    pub fn country(&self, addr: &IpAddr) -> Option<&str> {
        self.geoip()?.country(addr)
    }

    pub fn asn(&self, addr: &IpAddr) -> Option<u32> {
        self.geoip()?.asn(addr)
    }

    pub fn is_internal(&self, addr: &IpAddr) -> bool {
        self.named
            .iter()
            .filter(|(name, _)| name == INTERNAL)
            .any(|(_, blocks)| blocks.iter().any(|b| b.contains(addr)))
    }

    /// The most specific named network holding `addr` (longest prefix; on
    /// a tie the first name in order), `internal` only as a last resort.
    pub fn group(&self, addr: &IpAddr) -> Option<&str> {
        let mut best: Option<(&str, u8)> = None;
        for (name, blocks) in &self.named {
            if name == INTERNAL {
                continue;
            }
            for b in blocks.iter().filter(|b| b.contains(addr)) {
                if best.is_none_or(|(_, p)| b.prefix > p) {
                    best = Some((name, b.prefix));
                }
            }
        }
        best.map(|(n, _)| n)
            .or_else(|| self.is_internal(addr).then_some(INTERNAL))
    }

    /// The table as collector.toml writes it.
    pub fn table(&self) -> BTreeMap<String, Vec<String>> {
        self.named
            .iter()
            .map(|(name, blocks)| (name.clone(), blocks.iter().map(Cidr::to_string).collect()))
            .collect()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.named.iter().map(|(n, _)| n.as_str())
    }

    pub fn enrich(&self, r: &FlowRecord) -> Enrichment {
        Enrichment {
            from_internal: self.is_internal(&r.src.addr),
            to_internal: self.is_internal(&r.dst.addr),
            src_group: self.group(&r.src.addr).map(str::to_string),
            dst_group: self.group(&r.dst.addr).map(str::to_string),
            src_country: self.country(&r.src.addr).map(str::to_string),
            dst_country: self.country(&r.dst.addr).map(str::to_string),
            src_asn: self.asn(&r.src.addr),
            dst_asn: self.asn(&r.dst.addr),
        }
    }

    /// [`Networks::enrich`] into `e`, reusing its texts: no allocation per
    /// flow when a query rebuilds millions of them.
    pub fn enrich_into(&self, r: &FlowRecord, e: &mut Enrichment) {
        e.from_internal = self.is_internal(&r.src.addr);
        e.to_internal = self.is_internal(&r.dst.addr);
        for (slot, value) in [
            (&mut e.src_group, self.group(&r.src.addr)),
            (&mut e.dst_group, self.group(&r.dst.addr)),
            (&mut e.src_country, self.country(&r.src.addr)),
            (&mut e.dst_country, self.country(&r.dst.addr)),
        ] {
            match (value, slot.as_mut()) {
                (Some(g), Some(s)) if s == g => {}
                (Some(g), Some(s)) => {
                    s.clear();
                    s.push_str(g);
                }
                (Some(g), None) => *slot = Some(g.to_string()),
                (None, _) => *slot = None,
            }
        }
        e.src_asn = self.asn(&r.src.addr);
        e.dst_asn = self.asn(&r.dst.addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets() -> Networks {
        let mut t = BTreeMap::new();
        t.insert(
            "internal".into(),
            vec!["172.30.0.0/16".into(), "fd00::/8".into()],
        );
        t.insert("databases".into(), vec!["172.30.0.86/32".into()]);
        t.insert("servers".into(), vec!["172.30.0.0/24".into()]);
        Networks::from_config(&t).unwrap()
    }

    #[test]
    fn enriching_in_place_gives_what_enrich_gives() {
        let n = nets();
        let mut e = Enrichment::default();
        let addrs = [
            "172.30.0.86",
            "172.30.0.5",
            "172.30.9.9",
            "8.8.8.8",
            "fd00::1",
            "172.30.0.86",
        ];
        for (i, a) in addrs.iter().enumerate() {
            let mut r = FlowRecord::default();
            r.src.addr = a.parse().unwrap();
            r.dst.addr = addrs[(i + 2) % addrs.len()].parse().unwrap();
            n.enrich_into(&r, &mut e);
            assert_eq!(e, n.enrich(&r), "{a}");
        }
    }

    #[test]
    fn cidr_matching() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains(&"10.1.255.3".parse().unwrap()));
        assert!(!c.contains(&"10.2.0.1".parse().unwrap()));
        assert!(c.contains(&"::ffff:10.1.2.3".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains(&"8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains(&"2001:db8:1::5".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("ten/8").is_err());
    }

    #[test]
    fn the_most_specific_group_wins_and_internal_is_the_fallback() {
        let n = nets();
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(n.group(&a("172.30.0.86")), Some("databases"));
        assert_eq!(n.group(&a("172.30.0.9")), Some("servers"));
        assert_eq!(n.group(&a("172.30.5.9")), Some("internal"));
        assert_eq!(n.group(&a("8.8.8.8")), None);
        assert!(n.is_internal(&a("fd12::1")) && !n.is_internal(&a("2001:db8::1")));
        let mut bad = BTreeMap::new();
        bad.insert("dmz".to_string(), vec!["10.0.0.0/40".to_string()]);
        assert!(Networks::from_config(&bad)
            .unwrap_err()
            .starts_with("networks.dmz:"));
    }
}
