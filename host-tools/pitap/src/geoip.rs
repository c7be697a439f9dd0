//! Country and autonomous system of an address, from MaxMind-format
//! databases the user supplies (GeoLite2-Country or -City and GeoLite2-ASN,
//! or DB-IP's Lite files), read with the `maxminddb` crate. They give the
//! query fields `src_country`, `dst_country`, `src_asn`, `dst_asn` (see
//! fields.rs) the way named networks give `src_group`.

use std::net::IpAddr;
use std::path::Path;

use maxminddb::{path, Reader};

/// `[geoip]` in collector.toml.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoIpSection {
    /// A country (or city) database: `country.iso_code` of an address.
    pub country: Option<String>,
    /// An ASN database: `autonomous_system_number`.
    pub asn: Option<String>,
}

pub struct GeoIp {
    country: Option<Reader<Vec<u8>>>,
    asn: Option<Reader<Vec<u8>>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("country", &self.country.is_some())
            .field("asn", &self.asn.is_some())
            .finish()
    }
}

fn open(key: &str, path: &str) -> Result<Reader<Vec<u8>>, String> {
    Reader::open_readfile(Path::new(path)).map_err(|e| format!("geoip.{key}: {path}: {e}"))
}

impl GeoIp {
    /// The databases `[geoip]` names (None: it names none).
    pub fn open(section: &GeoIpSection) -> Result<Option<GeoIp>, String> {
        if section.country.is_none() && section.asn.is_none() {
            return Ok(None);
        }
        Ok(Some(GeoIp {
            country: section
                .country
                .as_deref()
                .map(|p| open("country", p))
                .transpose()?,
            asn: section.asn.as_deref().map(|p| open("asn", p)).transpose()?,
        }))
    }

    /// The ISO 3166 code of the country of `addr`. A database that cannot
    /// answer (an IPv6 address in an IPv4 file, a damaged record) says
    /// nothing rather than failing a query.
    pub fn country(&self, addr: &IpAddr) -> Option<&str> {
        let reader = self.country.as_ref()?;
        reader
            .lookup(*addr)
            .ok()?
            .decode_path::<&str>(&path!["country", "iso_code"])
            .ok()
            .flatten()
    }

    /// The autonomous system number of `addr`.
    pub fn asn(&self, addr: &IpAddr) -> Option<u32> {
        let reader = self.asn.as_ref()?;
        reader
            .lookup(*addr)
            .ok()?
            .decode_path::<u32>(&path!["autonomous_system_number"])
            .ok()
            .flatten()
    }

    pub fn has_country(&self) -> bool {
        self.country.is_some()
    }
}
