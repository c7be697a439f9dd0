//! `collector.toml`: where to listen, where lines go, and each tap's key.
//! Unknown keys, wrong types and bad values are errors naming the key.

use std::collections::BTreeMap;
use std::path::Path;

use pitap_wire::envelope::Key;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorSection {
    pub listen: Option<String>,
    pub format: Option<String>,
    pub output: Option<String>,
    pub state: Option<String>,
    #[serde(default)]
    pub insecure_plaintext: bool,
    pub status_interval_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapEntry {
    pub key: String,
}

/// `[store]`: the SQLite flow store.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// Default: pitap-flows.db in the working directory.
    pub path: Option<String>,
    /// Set false to only print lines.
    pub enabled: Option<bool>,
    pub retention_days: Option<f64>,
    pub max_size_mb: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    #[serde(default)]
    pub collector: CollectorSection,
    #[serde(default)]
    pub taps: BTreeMap<String, TapEntry>,
    #[serde(default)]
    pub store: StoreSection,
    /// Named networks: `internal = ["172.30.0.0/16"]`, `databases = [...]`.
    #[serde(default)]
    pub networks: BTreeMap<String, Vec<String>>,
    #[serde(default, rename = "alert")]
    pub alerts: Vec<crate::alerts::AlertRule>,
    #[serde(default)]
    pub export: crate::export::ExportSection,
    #[serde(default)]
    pub report: ReportSection,
    #[serde(default)]
    pub web: crate::web::WebSection,
    #[serde(default)]
    pub geoip: crate::geoip::GeoIpSection,
    #[serde(default)]
    pub tls: TlsSection,
}

/// `[tls]`: how https receivers (webhooks, Splunk HEC) are checked.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM CAs to trust instead of the Mozilla roots (a private CA, or a
    /// receiver's self-signed certificate).
    pub ca_file: Option<String>,
}

/// `[report]`: which named networks hold data worth watching leave.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSection {
    #[serde(default)]
    pub sensitive: Vec<String>,
    /// Score (0 to 1) from which a series is reported as a beacon.
    pub beacon_score: Option<f64>,
}

impl ReportSection {
    /// The report's thresholds with what the section sets.
    pub fn thresholds(&self) -> Result<crate::report::Thresholds, String> {
        let mut t = crate::report::Thresholds::default();
        if let Some(s) = self.beacon_score {
            if !(0.0..=1.0).contains(&s) {
                return Err(format!("report.beacon_score: a score from 0 to 1, got {s}"));
            }
            t.beacon.min_score = s;
        }
        Ok(t)
    }
}

impl CollectorConfig {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let config: CollectorConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.keys()?;
        if let Some(listen) = &config.collector.listen {
            listen
                .parse::<std::net::SocketAddr>()
                .map_err(|_| format!("collector.listen: {listen:?} is not ADDRESS:PORT"))?;
        }
        if let Some(f) = &config.collector.format {
            f.parse::<pitap_wire::format::LineFormat>()
                .map_err(|e| format!("collector.format: {e}"))?;
        }
        let networks = config.networks()?;
        for (i, rule) in config.alerts.iter().enumerate() {
            rule.check()
                .map_err(|e| format!("alert[{i}] ({}): {e}", rule.name))?;
        }
        config.export.check()?;
        config.report.thresholds()?;
        for name in &config.report.sensitive {
            if !networks.names().any(|n| n == name) {
                return Err(format!(
                    "report.sensitive: {name:?} is not a network under [networks]"
                ));
            }
        }
        if let Some(d) = config.store.retention_days {
            if !(d.is_finite() && d > 0.0) {
                return Err("store.retention_days: a positive number of days".into());
            }
        }
        if let Some(m) = config.store.max_size_mb {
            if !(m.is_finite() && m >= 1.0) {
                return Err("store.max_size_mb: at least 1".into());
            }
        }
        Ok(config)
    }

    /// The named networks, with the `[geoip]` databases opened.
    pub fn networks(&self) -> Result<crate::networks::Networks, String> {
        Ok(crate::networks::Networks::from_config(&self.networks)?
            .with_geoip(crate::geoip::GeoIp::open(&self.geoip)?))
    }

    pub fn retention(&self) -> crate::store::Retention {
        crate::store::Retention {
            max_age_ms: self.store.retention_days.map(|d| (d * 86_400_000.0) as u64),
            max_bytes: self.store.max_size_mb.map(|m| (m * 1_048_576.0) as u64),
        }
    }

    /// What the web UI serves from this configuration.
    pub fn web(
        &self,
        store: std::path::PathBuf,
        networks: Option<crate::networks::Networks>,
        listen: Option<std::net::SocketAddr>,
    ) -> Result<crate::web::Options, String> {
        let listen = match (listen, &self.web.listen) {
            (Some(l), _) => l,
            (None, Some(l)) => l.parse().map_err(|_| "web.listen: not ADDRESS:PORT")?,
            (None, None) => std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        let hours = self.web.session_hours.unwrap_or(12.0);
        if !(hours.is_finite() && hours > 0.0 && hours <= 24.0 * 366.0) {
            return Err("web.session_hours: a positive number of hours".into());
        }
        if let Some(h) = &self.web.password_hash {
            if !h.starts_with("$argon2") {
                return Err(
                    "web.password_hash: not an Argon2 hash (make one with pitap web-password)"
                        .into(),
                );
            }
        }
        let alert_files = self
            .alerts
            .iter()
            .flat_map(|a| a.actions.iter())
            .filter_map(|a| a.strip_prefix("file:"))
            .map(std::path::PathBuf::from)
            .collect();
        Ok(crate::web::Options {
            listen,
            site: crate::web::pages::Site {
                store,
                networks,
                sensitive: self.report.sensitive.clone(),
                thresholds: self.report.thresholds()?,
                alert_files,
            },
            password_hash: self.web.password_hash.clone(),
            session: std::time::Duration::from_secs_f64(hours * 3600.0),
        })
    }

    /// Tap id -> key.
    pub fn keys(&self) -> Result<BTreeMap<String, Key>, String> {
        self.taps
            .iter()
            .map(|(id, entry)| {
                pitap_wire::codec::check_tap_id(id).map_err(|e| format!("taps.{id:?}: {e}"))?;
                Key::from_hex(&entry.key)
                    .map(|k| (id.clone(), k))
                    .map_err(|e| format!("taps.{id:?}.key: {e}"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_key() {
        let k = "ab".repeat(32);
        assert!(CollectorConfig::parse(&format!("[taps.t1]\nkey = \"{k}\"\n")).is_ok());
        let e = CollectorConfig::parse("[taps.t1]\nkey = \"short\"\n").unwrap_err();
        assert!(e.starts_with("taps.\"t1\".key:"), "{e}");
        let e = CollectorConfig::parse("[collector]\nlisten = \"here\"\n").unwrap_err();
        assert!(e.starts_with("collector.listen:"), "{e}");
        let e = CollectorConfig::parse("[collector]\ncolour = 1\n").unwrap_err();
        assert!(e.contains("colour"), "{e}");
    }
}
