//! `pitap update`: offers a tap a new boot partition image through the
//! running collector (a row in the store it reads), signed with the update
//! key; lists each tap's version and update state; cancels an offer.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pitap_wire::format::Time;
use pitap_wire::update::Manifest;

use crate::store::updates;
use crate::store::Store;

pub struct Offer {
    pub store: PathBuf,
    pub tap: String,
    pub image: PathBuf,
    /// The image's name in listings; none: from its digest.
    pub version: Option<String>,
    pub key: PathBuf,
    /// Wait this long for the tap to run it (or refuse it); none: return
    /// once it is offered.
    pub wait: Option<Duration>,
}

/// Offers the image; with `wait`, follows the tap until the offer ends.
/// Ok(true): the tap runs the version; Ok(false): offered, not waited for.
pub fn offer(o: &Offer, out: &mut dyn Write) -> Result<bool, String> {
    pitap_wire::codec::check_tap_id(&o.tap).map_err(|e| format!("--tap: {e}"))?;
    let key = crate::keygen::load_update_key(&o.key)?;
    let image = std::fs::read(&o.image).map_err(|e| format!("{}: {e}", o.image.display()))?;
    if image.is_empty() {
        return Err(format!("{}: empty image", o.image.display()));
    }
    let version = match &o.version {
        Some(v) => v.clone(),
        None => default_version(&image)?,
    };
    let manifest = Manifest::of(&version, &image).map_err(|e| format!("--version: {e}"))?;
    let signed = manifest.sign(&key);
    // Deflated here, once: the collector only serves it.
    let stream = updates::Stream::of(&image);
    let store = Store::open_existing(&o.store)?;
    let id = updates::offer(
        store.conn(),
        &o.tap,
        &version,
        &signed,
        &manifest.sha256,
        manifest.size,
        &stream,
        crate::search::now_ms(),
    )?;
    let say =
        |out: &mut dyn Write, text: String| writeln!(out, "{text}").map_err(|e| e.to_string());
    say(
        out,
        format!(
            "update {} ({} bytes, SHA-256 {}; {} bytes to send{}) offered to tap {} (offer {id}); the collector sends it when the tap next asks",
            version,
            image.len(),
            pitap_wire::envelope::hex(&manifest.sha256),
            stream.bytes.len(),
            if stream.encoding == pitap_wire::messages::ImageEncoding::Deflate {
                ", deflated"
            } else {
                ""
            },
            o.tap
        ),
    )?;
    let Some(wait) = o.wait else {
        return Ok(false);
    };
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let u = updates::get(store.conn(), id)?.ok_or("the offer left the store")?;
        let tap = updates::statuses(store.conn())?
            .into_iter()
            .find(|s| s.tap == o.tap);
        if let Some(t) = &tap {
            let line = describe(t);
            if line != last {
                say(out, line.clone())?;
                last = line;
            }
        }
        match u.state.as_str() {
            "done" => {
                say(out, format!("tap {} runs {version}", o.tap))?;
                return Ok(true);
            }
            "offered" => {}
            other => {
                return Err(format!(
                    "update {version} for tap {}: {other}{}",
                    o.tap,
                    if u.detail.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", u.detail)
                    }
                ))
            }
        }
        if start.elapsed() >= wait {
            return Err(format!(
                "tap {} does not run {version} after {} s (still offered; pitap update --list follows it)",
                o.tap,
                wait.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// An image's name from its bytes: what identifies it anyway.
fn default_version(image: &[u8]) -> Result<String, String> {
    let digest = Manifest::of("image", image)
        .map_err(|e| e.to_string())?
        .sha256;
    Ok(format!(
        "sha256-{}",
        &pitap_wire::envelope::hex(&digest)[..12]
    ))
}

fn describe(t: &updates::TapUpdate) -> String {
    format!("tap {} {}", t.tap, t.summary())
}

/// Each tap's version and update state, and the offers.
pub fn list(store: &Path, out: &mut dyn Write) -> Result<(), String> {
    let store = Store::open_existing(store)?;
    let w = |out: &mut dyn Write, text: String| writeln!(out, "{text}").map_err(|e| e.to_string());
    let statuses = updates::statuses(store.conn())?;
    if statuses.is_empty() {
        w(out, "no tap has sent an update status yet".into())?;
    }
    for t in &statuses {
        w(
            out,
            format!("{} (seen {})", describe(t), Time(t.seen_ms, 'T')),
        )?;
    }
    for u in updates::all(store.conn())? {
        w(
            out,
            format!(
                "offer {}: {} for tap {}, {} bytes, {}{} ({})",
                u.id,
                u.version,
                u.tap,
                u.size,
                u.state,
                if u.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", u.detail)
                },
                Time(u.created_ms, 'T')
            ),
        )?;
    }
    Ok(())
}

/// Withdraws the offer to `tap` (a transfer under way stops).
pub fn cancel(store: &Path, tap: &str) -> Result<usize, String> {
    let store = Store::open_existing(store)?;
    let n = updates::offered(store.conn())?
        .into_iter()
        .filter(|u| u.tap == tap)
        .map(|u| updates::end(store.conn(), u.id, "cancelled", "", crate::search::now_ms()))
        .collect::<Result<Vec<_>, _>>()?
        .len();
    Ok(n)
}
