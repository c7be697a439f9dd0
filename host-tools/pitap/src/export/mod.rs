//! Export to the pipelines people already run, as flows arrive at the
//! collector:
//!
//! - [`ipfix`]: IPFIX (RFC 7011) biflows with RFC 5103 reverse elements,
//!   and NetFlow v9 (RFC 3954, one record per direction), over UDP, with
//!   templates re-sent on a timer: nfcapd/nfdump, Elastic, Graylog (v9);
//! - [`gelf`]: GELF 1.1 over UDP (chunked) and TCP: Graylog;
//! - [`syslog`]: the flow line as RFC 5424 syslog over UDP.
//!
//! JSON lines are `pitap collect --format json` (or `pitap query --json`).

pub mod gelf;
pub mod ipfix;
pub mod splunk;
pub mod syslog;

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::flow::StoredFlow;

/// `[export]` in collector.toml: lists of ADDRESS:PORT per protocol.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSection {
    #[serde(default)]
    pub ipfix: Vec<String>,
    #[serde(default)]
    pub netflow9: Vec<String>,
    #[serde(default)]
    pub gelf_udp: Vec<String>,
    #[serde(default)]
    pub gelf_tcp: Vec<String>,
    #[serde(default)]
    pub syslog: Vec<String>,
    /// IPFIX/v9 templates are sent again this often (default 60 s).
    pub template_interval_s: Option<f64>,
    /// Largest GELF UDP chunk (default 1420, Graylog's WAN size).
    pub gelf_chunk_size: Option<usize>,
    /// Datagrams per second each UDP export sends at most (default
    /// [`DEFAULT_DATAGRAMS_PER_S`]; 0: as fast as the socket takes them).
    /// A receiver on the same host loses a burst its socket buffer cannot
    /// hold: nfcapd lost a third of a 200,000-flow replay sent unpaced.
    pub max_datagrams_per_s: Option<u32>,
    /// IPFIX records carry each flow's Community ID as enterprise-specific
    /// element 1 of this Private Enterprise Number (IANA assigns no element
    /// for it; use your organisation's PEN). Unset: not sent.
    pub ipfix_community_id_pen: Option<u32>,
    /// Splunk HTTP Event Collector: the endpoint's URL
    /// (`https://splunk:8088/services/collector/event`) and its token.
    pub splunk_hec: Option<String>,
    pub splunk_token: Option<String>,
    /// The Splunk index to write to (default: the token's).
    pub splunk_index: Option<String>,
    /// Events per POST (default 500).
    pub splunk_batch: Option<usize>,
}

/// The default pace: ~65,000 IPFIX flows a second.
pub const DEFAULT_DATAGRAMS_PER_S: u32 = 5_000;

/// Spaces datagrams at a rate, in bursts of a few (a sleep is coarser
/// than one datagram's interval).
pub struct Pacer {
    interval: Duration,
    next: Option<std::time::Instant>,
    /// Datagrams this pacer held back for (to the status line).
    pub waits: u64,
}

impl Pacer {
    pub fn new(per_s: u32) -> Pacer {
        Pacer {
            interval: if per_s == 0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(1.0 / f64::from(per_s))
            },
            next: None,
            waits: 0,
        }
    }

    /// Waits until the next datagram may go.
    pub fn wait(&mut self) {
        if self.interval.is_zero() {
            return;
        }
        let now = std::time::Instant::now();
        // Never bank more than a short burst of unused time.
        let burst = self.interval * 16;
        let next = self
            .next
            .map_or(now, |n| n.max(now.checked_sub(burst).unwrap_or(now)));
        if next > now + Duration::from_millis(1) {
            self.waits += 1;
            std::thread::sleep(next - now);
        }
        self.next = Some(next + self.interval);
    }
}

fn addresses(key: &str, list: &[String]) -> Result<Vec<SocketAddr>, String> {
    list.iter()
        .map(|a| {
            a.parse()
                .map_err(|_| format!("export.{key}: {a:?} is not ADDRESS:PORT"))
        })
        .collect()
}

impl ExportSection {
    pub fn check(&self) -> Result<(), String> {
        addresses("ipfix", &self.ipfix)?;
        addresses("netflow9", &self.netflow9)?;
        addresses("gelf_udp", &self.gelf_udp)?;
        addresses("gelf_tcp", &self.gelf_tcp)?;
        addresses("syslog", &self.syslog)?;
        if let Some(t) = self.template_interval_s {
            if !(t.is_finite() && t > 0.0) {
                return Err("export.template_interval_s: a positive number of seconds".into());
            }
        }
        if self.max_datagrams_per_s.is_some_and(|r| r > 10_000_000) {
            return Err("export.max_datagrams_per_s: at most 10,000,000 (0: unpaced)".into());
        }
        match (&self.splunk_hec, &self.splunk_token) {
            (Some(url), Some(token)) => {
                crate::webhook::check_url(url).map_err(|e| format!("export.splunk_hec: {e}"))?;
                if token.is_empty() || token.chars().any(|c| c.is_control() || c == ' ') {
                    return Err("export.splunk_token: the HEC token, no spaces".into());
                }
            }
            (None, None) => {}
            _ => return Err("export.splunk_hec and export.splunk_token go together".into()),
        }
        if matches!(self.ipfix_community_id_pen, Some(0 | ipfix::REVERSE_PEN)) {
            return Err(format!(
                "export.ipfix_community_id_pen: a Private Enterprise Number other than 0 and {} (RFC 5103's reverse elements)",
                ipfix::REVERSE_PEN
            ));
        }
        if self.splunk_batch == Some(0) {
            return Err("export.splunk_batch: at least 1 event".into());
        }
        if let Some(c) = self.gelf_chunk_size {
            if !(64..=8192).contains(&c) {
                return Err("export.gelf_chunk_size: 64 to 8192 bytes".into());
            }
        }
        Ok(())
    }
}

/// Something that takes flows for another system.
pub trait Exporter {
    fn export(&mut self, flows: &[StoredFlow]);
    /// Datagrams or messages sent, and send errors, for the status line.
    fn counts(&self) -> (u64, u64);
    fn describe(&self) -> String;
    /// Sends what is still queued, before the collector prints the counts
    /// and exits (an exporter with a thread of its own waits for it).
    fn finish(&mut self) {}
}

pub fn from_config(
    e: &ExportSection,
    tls_ca: Option<&std::path::Path>,
) -> Result<Vec<Box<dyn Exporter>>, String> {
    e.check()?;
    let interval = Duration::from_secs_f64(e.template_interval_s.unwrap_or(60.0));
    let pace = e.max_datagrams_per_s.unwrap_or(DEFAULT_DATAGRAMS_PER_S);
    let mut out: Vec<Box<dyn Exporter>> = Vec::new();
    for a in addresses("ipfix", &e.ipfix)? {
        out.push(Box::new(ipfix::FlowExporter::new(
            a,
            ipfix::Protocol::Ipfix,
            interval,
            pace,
            e.ipfix_community_id_pen,
        )?));
    }
    for a in addresses("netflow9", &e.netflow9)? {
        out.push(Box::new(ipfix::FlowExporter::new(
            a,
            ipfix::Protocol::NetflowV9,
            interval,
            pace,
            None,
        )?));
    }
    for a in addresses("gelf_udp", &e.gelf_udp)? {
        out.push(Box::new(gelf::GelfUdp::new(
            a,
            e.gelf_chunk_size.unwrap_or(1420),
        )?));
    }
    for a in addresses("gelf_tcp", &e.gelf_tcp)? {
        out.push(Box::new(gelf::GelfTcp::new(a)));
    }
    for a in addresses("syslog", &e.syslog)? {
        out.push(Box::new(syslog::Syslog::new(a)?));
    }
    if let (Some(url), Some(token)) = (&e.splunk_hec, &e.splunk_token) {
        out.push(Box::new(splunk::Hec::new(
            url,
            token,
            e.splunk_index.clone(),
            e.splunk_batch.unwrap_or(500),
            crate::webhook::Client::new(tls_ca)?,
        )?));
    }
    Ok(out)
}

/// A UDP socket connected to `to`, from an unspecified address of its family.
pub(crate) fn udp_to(to: SocketAddr) -> Result<std::net::UdpSocket, String> {
    let local: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().map_err(|_| "address".to_string())?
    } else {
        "[::]:0".parse().map_err(|_| "address".to_string())?
    };
    let s = std::net::UdpSocket::bind(local).map_err(|e| format!("export to {to}: {e}"))?;
    s.connect(to).map_err(|e| format!("export to {to}: {e}"))?;
    Ok(s)
}
