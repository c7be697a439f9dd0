//! HTTP(S) POSTs from the collector: alert webhooks (plain JSON, Slack or
//! Mattermost, Microsoft Teams) and Splunk's HTTP Event Collector. ureq on
//! rustls: blocking, so each receiver gets a thread of its own and a slow
//! or dead one never holds up collection (a full queue drops and counts).

use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::time::Duration;

const QUEUE: usize = 256;
const TIMEOUT: Duration = Duration::from_secs(5);

/// How an alert is put for its receiver.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Style {
    /// The alert's JSON as it is (`webhook:URL`).
    Json,
    /// `{"text": ...}`: Slack's and Mattermost's incoming webhooks (`slack:URL`).
    Slack,
    /// An Office 365 connector card: Microsoft Teams (`teams:URL`).
    Teams,
}

impl Style {
    /// The body to post: `json` is the alert, `line` its one-line summary.
    pub fn body(self, json: &str, line: &str) -> String {
        match self {
            Style::Json => json.to_string(),
            Style::Slack => serde_json::json!({ "text": line }).to_string(),
            Style::Teams => serde_json::json!({
                "@type": "MessageCard",
                "@context": "https://schema.org/extensions",
                "summary": line,
                "title": "PiTap alert",
                "text": line,
            })
            .to_string(),
        }
    }
}

/// Checks a receiver's URL: http:// or https:// and a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("{url:?}: http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?}: no host"));
    }
    Ok(())
}

/// An HTTPS client: the Mozilla roots, or only the CAs of `ca_file` (a
/// private CA, a receiver's self-signed certificate).
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
}

impl Client {
    pub fn new(ca_file: Option<&Path>) -> Result<Client, String> {
        let roots = match ca_file {
            None => ureq::tls::RootCerts::WebPki,
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                    .filter_map(|item| match item {
                        Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                        _ => None,
                    })
                    .collect();
                if certs.is_empty() {
                    return Err(format!("{}: no PEM certificate in it", path.display()));
                }
                ureq::tls::RootCerts::new_with_certs(&certs)
            }
        };
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .user_agent("pitap")
            .tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build())
            .build();
        Ok(Client {
            agent: config.into(),
        })
    }

    /// One POST; the HTTP status.
    pub fn post(&self, url: &str, headers: &[(&str, &str)], body: &str) -> Result<u16, String> {
        self.send(url, headers, body)
            .map_err(|e| format!("{url}: {e}"))
    }

    fn send(&self, url: &str, headers: &[(&str, &str)], body: &str) -> Result<u16, ureq::Error> {
        let mut request = self
            .agent
            .post(url)
            .header("Content-Type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send(body).map(|r| r.status().as_u16())
    }
}

impl Client {
    /// A POST retried while the receiver says "not now" (a 429, a 5xx, no
    /// answer), waiting a quarter second, then twice as long each time; a
    /// refusal for good (another 4xx: a bad token, a wrong path; a
    /// certificate that does not verify) is not retried. `retries` counts the retries.
    pub fn post_with_retries(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
        tries: u32,
        retries: &std::sync::atomic::AtomicU64,
    ) -> Result<(), String> {
        let mut wait = Duration::from_millis(250);
        let mut last = String::new();
        for attempt in 0..tries {
            if attempt > 0 {
                retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(wait);
                wait *= 2;
            }
            match self.send(url, headers, body) {
                Ok(code) if (200..300).contains(&code) => return Ok(()),
                Ok(code) if (400..500).contains(&code) && code != 429 => {
                    return Err(format!("HTTP {code}"))
                }
                Ok(code) => last = format!("HTTP {code}"),
                // rustls reports a certificate it refuses as invalid data:
                // the same certificate is refused again.
                Err(ureq::Error::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                    return Err(e.to_string())
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!("{last} after {tries} tries"))
    }
}

/// Tries per alert.
const WEBHOOK_TRIES: u32 = 4;

/// The alert webhooks' thread.
pub struct Poster {
    queue: Option<SyncSender<(String, String)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Alerts queued before the collector stops are still posted.
impl Drop for Poster {
    fn drop(&mut self) {
        self.queue = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Poster {
    pub fn start(client: Client) -> Poster {
        let (tx, rx) = sync_channel::<(String, String)>(QUEUE);
        let thread = std::thread::spawn(move || {
            let retries = std::sync::atomic::AtomicU64::new(0);
            for (url, body) in rx {
                if let Err(e) = client.post_with_retries(&url, &[], &body, WEBHOOK_TRIES, &retries)
                {
                    eprintln!("pitap: webhook {url}: {e}");
                }
            }
        });
        Poster {
            queue: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn post(&self, url: &str, body: String) -> Result<(), String> {
        let Some(queue) = &self.queue else {
            return Err("webhook thread stopped".into());
        };
        match queue.try_send((url.to_string(), body)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err("webhook queue full: alert not posted".into()),
            Err(TrySendError::Disconnected(_)) => Err("webhook thread gone".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_url("https://hooks.slack.com/services/T0/B0/x").is_ok());
        assert!(check_url("http://[::1]:81/x").is_ok());
        assert!(check_url("ftp://example.net/").is_err());
        assert!(check_url("https:///x").is_err());
        assert!(check_url("example.net").is_err());
    }

    #[test]
    fn styles() {
        let json = r#"{"alert":"x"}"#;
        assert_eq!(Style::Json.body(json, "l"), json);
        let slack: serde_json::Value =
            serde_json::from_str(&Style::Slack.body(json, "a <b>")).unwrap();
        assert_eq!(slack["text"], "a <b>");
        let teams: serde_json::Value = serde_json::from_str(&Style::Teams.body(json, "l")).unwrap();
        assert_eq!(teams["@type"], "MessageCard");
        assert_eq!(teams["text"], "l");
    }
}
