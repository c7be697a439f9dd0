//! The collector's side of packet fetches: the waiting requests of the
//! store put in each tap's replies, saying how much of the answer is
//! stored; the chunks that arrive kept until the next commit stores them;
//! a finished answer marked done (and written out, for alert actions).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pitap_wire::messages::{PacketChunk, PacketRequest};
use rusqlite::Connection;

use crate::store::fetches::{self, Fetch};
use crate::store::Store;

/// How often the store is read for new requests.
const LOAD_EVERY: Duration = Duration::from_millis(500);
/// Chunks kept per fetch between commits (out of order included).
const MAX_PENDING: usize = 512;
/// A finished request stays in the replies this long, saying the answer is
/// whole, so the tap stops sending it.
const SAY_DONE_FOR: Duration = Duration::from_secs(10);

struct Active {
    fetch: Fetch,
    /// Bytes stored from the start, without a hole.
    have: u64,
    /// Chunks received since the last commit.
    pending: BTreeMap<u64, Vec<u8>>,
    /// A new answer began (another boot of the tap, another length): what
    /// was stored goes at the next commit.
    restart: bool,
}

#[derive(Default)]
pub struct Fetching {
    active: BTreeMap<u64, Active>,
    last_load: Option<Instant>,
    /// Fetches finished, written by `write_outputs` after the commit.
    finished: Vec<Fetch>,
    /// Finished requests, said done in the replies for a while.
    done: Vec<(String, PacketRequest, Instant)>,
    pub chunks: u64,
    pub refused_chunks: u64,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Fetching {
    /// Takes up the store's waiting requests (every half second at most).
    pub fn load(&mut self, store: &Store) -> Result<(), String> {
        if self.last_load.is_some_and(|t| t.elapsed() < LOAD_EVERY) {
            return Ok(());
        }
        self.last_load = Some(Instant::now());
        for f in fetches::waiting(store.conn())? {
            if self.active.contains_key(&f.id) {
                continue;
            }
            let have = fetches::have(store.conn(), f.id)?;
            self.active.insert(
                f.id,
                Active {
                    fetch: f,
                    have,
                    pending: BTreeMap::new(),
                    restart: false,
                },
            );
        }
        Ok(())
    }

    /// A chunk from `tap`'s boot `boot`; `false` when no fetch of that tap
    /// waits for it.
    pub fn chunk(&mut self, tap: &str, boot: &[u8; 16], chunk: PacketChunk) -> bool {
        let Some(a) = self
            .active
            .get_mut(&chunk.id)
            .filter(|a| a.fetch.tap == tap)
        else {
            self.refused_chunks += 1;
            return false;
        };
        let boot = hex(boot);
        if a.fetch.boot.as_deref() != Some(&boot) || a.fetch.total != Some(chunk.total) {
            a.fetch.boot = Some(boot);
            a.fetch.total = Some(chunk.total);
            a.fetch.packets = chunk.packets;
            a.fetch.left_out = chunk.left_out;
            a.have = 0;
            a.pending.clear();
            a.restart = true;
        }
        let end = chunk.offset + chunk.data.len() as u64;
        if end > a.have && end <= chunk.total && a.pending.len() < MAX_PENDING {
            a.pending.entry(chunk.offset).or_insert(chunk.data);
        }
        self.chunks += 1;
        true
    }

    /// Whether chunks wait for a commit.
    pub fn has_pending(&self) -> bool {
        self.active
            .values()
            .any(|a| !a.pending.is_empty() || a.restart)
    }

    /// Stores what arrived, in the commit's transaction; marks answers
    /// that are whole done.
    pub fn commit(&mut self, conn: &Connection) -> Result<(), String> {
        let mut done = Vec::new();
        for (id, a) in &mut self.active {
            if std::mem::take(&mut a.restart) {
                let boot = a.fetch.boot.clone().unwrap_or_default();
                let total = a.fetch.total.unwrap_or(0);
                fetches::set_answer(conn, *id, &boot, total, a.fetch.packets, a.fetch.left_out)?;
            }
            if !a.pending.is_empty() {
                let chunks: Vec<(u64, Vec<u8>)> =
                    std::mem::take(&mut a.pending).into_iter().collect();
                fetches::add_chunks(conn, *id, &chunks)?;
                a.have = fetches::have(conn, *id)?;
            }
            if a.fetch.total.is_some_and(|t| a.have >= t) {
                fetches::finish(conn, *id)?;
                done.push(*id);
            }
        }
        for id in done {
            if let Some(a) = self.active.remove(&id) {
                let whole = PacketRequest {
                    have: a.have,
                    ..a.fetch.request.clone()
                };
                self.done.push((a.fetch.tap.clone(), whole, Instant::now()));
                self.finished.push(a.fetch);
            }
        }
        Ok(())
    }

    /// Each tap's requests with what is stored of each answer.
    pub fn requests(&mut self) -> BTreeMap<String, Vec<PacketRequest>> {
        let mut by_tap: BTreeMap<String, Vec<PacketRequest>> = BTreeMap::new();
        self.done.retain(|(_, _, at)| at.elapsed() < SAY_DONE_FOR);
        for (tap, r, _) in &self.done {
            by_tap.entry(tap.clone()).or_default().push(r.clone());
        }
        for a in self.active.values() {
            let list = by_tap.entry(a.fetch.tap.clone()).or_default();
            // A reply carries a few at once; the rest wait their turn.
            if list.len() < 6 {
                list.push(PacketRequest {
                    have: a.have,
                    ..a.fetch.request.clone()
                });
            }
        }
        by_tap
    }

    /// Writes the finished fetches that name an output file (alert
    /// actions): the section header, then the answer.
    pub fn write_outputs(&mut self, store: &Store) -> Result<(), String> {
        for f in std::mem::take(&mut self.finished) {
            if let Some(path) = &f.output {
                let bytes = pcapng_file(store, &f)?;
                let tmp = format!("{path}.tmp");
                std::fs::write(&tmp, &bytes)
                    .and_then(|()| std::fs::rename(&tmp, path))
                    .map_err(|e| format!("{path}: {e}"))?;
                eprintln!(
                    "pitap: fetched {} packets from tap {} into {path}",
                    f.packets, f.tap
                );
            }
        }
        Ok(())
    }
}

/// A finished fetch as a pcapng file: the section header with the fetch's
/// comment, then the tap's blocks.
pub fn pcapng_file(store: &Store, f: &Fetch) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    pitap_wire::pcapng::section_header(&mut out, &f.comment);
    out.extend_from_slice(&fetches::answer(store.conn(), f.id)?);
    Ok(out)
}
