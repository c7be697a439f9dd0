//! The collector's side of updates: the offers of the store (`pitap
//! update`) put in the answers to each tap's update status, the image
//! chunks it asks for sent back, the taps' statuses stored, and an offer
//! ended once its tap runs the version (done) or refused it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pitap_wire::messages::{
    ImageEncoding, UpdateData, UpdateState, UpdateStatus, MAX_WANT, UPDATE_CHUNK,
};
use rusqlite::Connection;

use crate::store::updates::{self, Update};
use crate::store::Store;

/// How often the store is read for new offers.
const LOAD_EVERY: Duration = Duration::from_millis(500);

struct Offer {
    update: Update,
    /// SHA-256 of the signed manifest: how a tap's status names the offer.
    id: [u8; 32],
    /// What travels (`pitap update` deflated the image when that was smaller).
    encoding: ImageEncoding,
    /// Shared by the offers of the same image to many taps: one copy.
    stream: Arc<Vec<u8>>,
    /// The boot of the tap that wrote it and rebooted to try it: a later
    /// boot that neither tries nor runs it came back on the old partition.
    tried_by: Option<[u8; 16]>,
}

#[derive(Default)]
pub struct Updating {
    /// The offer to each tap.
    offers: BTreeMap<String, Offer>,
    last_load: Option<Instant>,
    /// Each tap's last status, and the taps whose status changed since the
    /// last save.
    statuses: BTreeMap<String, UpdateStatus>,
    changed: BTreeSet<String>,
    /// Offers ended, for the next save: (id, state, detail).
    ended: Vec<(u64, &'static str, String)>,
    pub chunks: u64,
}

impl Updating {
    /// Takes up the store's offers (every half second at most); an offer
    /// no longer offered there (cancelled, replaced) is withdrawn.
    pub fn load(&mut self, store: &Store) -> Result<(), String> {
        if self.last_load.is_some_and(|t| t.elapsed() < LOAD_EVERY) {
            return Ok(());
        }
        self.last_load = Some(Instant::now());
        let offered = updates::offered(store.conn())?;
        self.offers
            .retain(|tap, o| offered.iter().any(|u| u.id == o.update.id && &u.tap == tap));
        for u in offered {
            if self.offers.get(&u.tap).is_some_and(|o| o.update.id == u.id) {
                continue;
            }
            let updates::Stream {
                encoding,
                bytes: stream,
            } = updates::stream(store.conn(), u.id)?;
            eprintln!(
                "pitap: offering update {} ({} bytes, {} to send{}) to tap {}",
                u.version,
                u.size,
                stream.len(),
                if encoding == ImageEncoding::Deflate {
                    " deflated"
                } else {
                    ""
                },
                u.tap
            );
            // A fleet offered one image holds it once.
            let stream = match self
                .offers
                .values()
                .find(|o| o.encoding == encoding && *o.stream == stream)
            {
                Some(same) => Arc::clone(&same.stream),
                None => Arc::new(stream),
            };
            let id = pitap_wire::update::offer_id(&u.manifest);
            self.offers.insert(
                u.tap.clone(),
                Offer {
                    update: u,
                    id,
                    encoding,
                    stream,
                    tried_by: None,
                },
            );
        }
        Ok(())
    }

    /// The answers to a tap's status: one per chunk it wants that the
    /// offer has (one without data if none), each with the offer and what
    /// the collector saw.
    pub fn answer(&mut self, tap: &str, boot: [u8; 16], status: UpdateStatus) -> Vec<UpdateData> {
        let before = self.statuses.get(tap);
        // Saved when it says something new (at the next flush: one row).
        if before.is_none_or(|b| {
            UpdateStatus {
                want: Vec::new(),
                ..b.clone()
            } != UpdateStatus {
                want: Vec::new(),
                ..status.clone()
            }
        }) {
            if before.is_none_or(|b| b.state != status.state || b.running != status.running) {
                eprintln!(
                    "pitap: tap {tap} runs {} (partition {}): update {}{}{}",
                    status.running,
                    status.partition,
                    status.state.as_str(),
                    if status.version.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", status.version)
                    },
                    if status.detail.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", status.detail)
                    }
                );
            }
            self.changed.insert(tap.to_string());
        }
        self.end_if_over(tap, boot, &status);
        let offer = self.offers.get(tap);
        let template = UpdateData {
            tap_boot: boot,
            manifest: offer.map(|o| o.update.manifest.clone()).unwrap_or_default(),
            seen_running: status.running.clone(),
            seen_state: status.state,
            encoding: offer.map_or(ImageEncoding::Raw, |o| o.encoding),
            stream_len: offer.map_or(0, |o| o.stream.len() as u64),
            offset: 0,
            data: Vec::new(),
        };
        let mut out = Vec::new();
        if let Some(o) = offer.filter(|o| o.id == status.offer) {
            for &at in status.want.iter().take(MAX_WANT) {
                let Ok(from) = usize::try_from(at) else {
                    continue;
                };
                if from % UPDATE_CHUNK != 0 || from >= o.stream.len() {
                    continue;
                }
                let to = (from + UPDATE_CHUNK).min(o.stream.len());
                out.push(UpdateData {
                    offset: at,
                    data: o.stream[from..to].to_vec(),
                    ..template.clone()
                });
            }
        }
        self.chunks += out.len() as u64;
        if out.is_empty() {
            out.push(template);
        }
        self.statuses.insert(tap.to_string(), status);
        out
    }

    /// The offer to `tap` is over when the tap runs its image (committed,
    /// or found it running), refused it, or came back from its trial on
    /// the old partition.
    fn end_if_over(&mut self, tap: &str, boot: [u8; 16], status: &UpdateStatus) {
        let Some(o) = self.offers.get_mut(tap) else {
            return;
        };
        let about_it = status.offer == o.id;
        if about_it && status.state == UpdateState::Written {
            o.tried_by = Some(boot);
        }
        let came_back = o.tried_by.is_some_and(|b| b != boot)
            && !matches!(
                status.state,
                UpdateState::Trial | UpdateState::Committed | UpdateState::Current
            );
        let (state, detail) = match status.state {
            UpdateState::Current | UpdateState::Committed if about_it => ("done", String::new()),
            UpdateState::Refused if about_it => ("refused", status.detail.clone()),
            UpdateState::RollingBack => ("rolled back", status.detail.clone()),
            _ if came_back => (
                "rolled back",
                "the trial boot did not commit: the tap came back on its old partition".into(),
            ),
            _ => return,
        };
        self.ended.push((o.update.id, state, detail.clone()));
        eprintln!(
            "pitap: update {} for tap {tap}: {state}{}",
            o.update.version,
            if detail.is_empty() {
                String::new()
            } else {
                format!(" ({detail})")
            }
        );
        self.offers.remove(tap);
    }

    /// Statuses that changed and offers that ended, into the store (inside
    /// the collector's commit or on their own).
    pub fn save(&mut self, conn: &Connection, now_ms: u64) -> Result<(), String> {
        for tap in std::mem::take(&mut self.changed) {
            if let Some(s) = self.statuses.get(&tap) {
                updates::save_status(conn, &tap, s, now_ms)?;
            }
        }
        for (id, state, detail) in std::mem::take(&mut self.ended) {
            updates::end(conn, id, state, &detail, now_ms)?;
        }
        Ok(())
    }

    /// Whether anything waits to be saved.
    pub fn dirty(&self) -> bool {
        !self.changed.is_empty() || !self.ended.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_of_one_image_to_many_taps_share_it_and_chunks_come_from_it() {
        let dir = std::env::temp_dir().join(format!("pitap-updating-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("s.db")).unwrap();
        let key = pitap_wire::update::signing_key([3; 32]);
        // Noise, then zeros: it deflates, to more than two chunks.
        let made = |seed: u32| -> Vec<u8> {
            let mut x = seed;
            (0..50_000u32)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    if i < 20_000 {
                        x as u8
                    } else {
                        0
                    }
                })
                .collect()
        };
        let (image, other) = (made(7), made(9));
        for (tap, img) in [("a", &image), ("b", &image), ("c", &other)] {
            let m = pitap_wire::update::Manifest::of("v", img).unwrap();
            let stream = updates::Stream::of(img);
            assert_eq!(stream.encoding, ImageEncoding::Deflate);
            updates::offer(
                store.conn(),
                tap,
                "v",
                &m.sign(&key),
                &m.sha256,
                m.size,
                &stream,
                1,
            )
            .unwrap();
        }
        let mut u = Updating::default();
        u.load(&store).unwrap();
        assert!(Arc::ptr_eq(&u.offers["a"].stream, &u.offers["b"].stream));
        assert!(!Arc::ptr_eq(&u.offers["a"].stream, &u.offers["c"].stream));
        // Chunks are the stream's, and only what a status about the offer asks.
        let offer = u.offers["a"].id;
        let status = UpdateStatus {
            offer,
            want: vec![0, UPDATE_CHUNK as u64, 7, 1 << 40],
            ..UpdateStatus::default()
        };
        let out = u.answer("a", [1; 16], status.clone());
        assert_eq!(
            out.len(),
            2,
            "the unaligned and the past-the-end offsets are not served"
        );
        let stream = &u.offers["a"].stream;
        assert_eq!(out[0].data, stream[..UPDATE_CHUNK]);
        assert_eq!(out[0].encoding, ImageEncoding::Deflate);
        assert_eq!(out[0].stream_len, stream.len() as u64);
        let elsewhere = u.answer("c", [1; 16], status);
        assert_eq!(elsewhere.len(), 1, "another tap's offer: no chunks");
        assert!(elsewhere[0].data.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
