//! The tap's side of an update, as a state machine with no I/O of its own
//! but the partition and autoboot.txt: the collector's offer (a signed
//! manifest in every `UpdateData`) is checked with the update key before
//! anything is written; the image is pulled in windows of chunks from the
//! next byte the partition lacks (so a lost chunk, a collector restart or
//! a silent link only cost asking again), written to the partition
//! autoboot.txt boots on trial, checked whole and read back; then the tap
//! asks for a reboot with the tryboot flag.
//!
//! A trial boot (the firmware says tryboot, and this is autoboot.txt's
//! `[tryboot]` partition) commits by swapping autoboot.txt's partitions
//! only once pitapd is healthy and the collector has answered a status
//! saying it runs on trial; if that has not happened within the trial time
//! it asks for a plain reboot, which the firmware takes to the old
//! partition. A trial that hangs or dies before is ended by init's timer
//! or the hardware watchdog the same way: nothing but the commit makes the
//! new partition the one that boots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pitap_wire::messages::{
    ImageEncoding, UpdateData, UpdateState, UpdateStatus, MAX_WANT, UPDATE_CHUNK,
};
use pitap_wire::update::{Manifest, VerifyingKey};

use super::autoboot::AutoBoot;
use super::boot::BootInfo;
use super::writer::{partition_digest, PartitionWriter};

/// The `[update]` section, checked.
#[derive(Clone, Debug)]
pub struct UpdateSettings {
    /// The key update manifests must be signed with.
    pub key: VerifyingKey,
    /// The card's autoboot.txt.
    pub autoboot: PathBuf,
    /// Where autoboot.txt's filesystem is mounted read-only (remounted
    /// read-write for the commit); none: it is writable as it is.
    pub remount: Option<PathBuf>,
    /// The boot partitions' devices, `{n}` for the partition number.
    pub partitions: String,
    /// How long a trial boot has to be healthy and acknowledged.
    pub trial: Duration,
    /// Where this boot's partition and tryboot flag are read from.
    pub bootloader: PathBuf,
    pub cmdline: PathBuf,
}

/// `update.partitions` that means: the disk autoboot.txt's partition is on.
pub const AUTO: &str = "auto";

impl UpdateSettings {
    pub fn partition(&self, n: u8) -> PathBuf {
        PathBuf::from(self.partitions.replace("{n}", &n.to_string()))
    }
}

/// What the updater wants done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Stop cleanly and reboot; `tryboot`: into the trial partition.
    Reboot { tryboot: bool },
}

/// A status goes at least this often, and this often while a trial waits.
const STATUS_EVERY: Duration = Duration::from_secs(5);
const TRIAL_STATUS_EVERY: Duration = Duration::from_secs(1);
/// No new bytes for this long after asking: ask again from the first
/// missing one.
const STALL: Duration = Duration::from_millis(400);
/// Chunks past the next wanted byte came, for this long after asking: the
/// one before them was lost.
const GAP_WAIT: Duration = Duration::from_millis(60);
/// Time for the last status to leave before a reboot.
const REBOOT_DELAY: Duration = Duration::from_secs(1);
/// Manifests refused, remembered so an offer repeated in every answer is
/// checked once.
const REFUSED_KEPT: usize = 16;

struct Transfer {
    /// SHA-256 of the signed manifest's bytes: which offer this is.
    offer: [u8; 32],
    manifest: Manifest,
    writer: PartitionWriter,
    /// The stream as it travels (the image, or a deflate stream of it), its
    /// length, and the next byte of it wanted.
    stream_len: u64,
    pos: u64,
    inflater: Option<flate2::Decompress>,
    inflated: Vec<u8>,
    /// Chunks past the next wanted byte, until the gap before them fills.
    ahead: BTreeMap<u64, Vec<u8>>,
    /// Asked for up to here, when.
    asked_until: u64,
    asked_at: Option<Instant>,
    moved: Instant,
}

impl Transfer {
    /// The stream's bytes at `pos`, into the partition (inflated first
    /// when deflated).
    fn take(&mut self, bytes: &[u8]) -> Result<(), String> {
        let at = self.writer.received();
        match self.inflater.as_mut() {
            None => self.writer.take(at, bytes).map_err(|e| e.to_string())?,
            Some(z) => {
                let mut input = bytes;
                loop {
                    let (read, wrote) = (z.total_in(), z.total_out());
                    let status = z
                        .decompress(input, &mut self.inflated, flate2::FlushDecompress::None)
                        .map_err(|e| format!("not a deflate stream: {e}"))?;
                    let used = (z.total_in() - read) as usize;
                    let made = (z.total_out() - wrote) as usize;
                    input = &input[used..];
                    if made > 0 {
                        let at = self.writer.received();
                        self.writer
                            .take(at, &self.inflated[..made])
                            .map_err(|e| e.to_string())?;
                    }
                    if status == flate2::Status::StreamEnd {
                        if !input.is_empty() {
                            return Err("bytes after the deflate stream".into());
                        }
                        break;
                    }
                    // Done with this piece once it is all taken and nothing
                    // more came out; a call may give pending output without
                    // taking input (then it goes on).
                    if input.is_empty() && made < self.inflated.len() {
                        break;
                    }
                    if used == 0 && made == 0 {
                        return Err("the deflate stream stalled".into());
                    }
                }
            }
        }
        self.pos += bytes.len() as u64;
        if self.pos >= self.stream_len && !self.writer.is_complete() {
            return Err(format!(
                "the transfer ended after {} of {} bytes",
                self.writer.received(),
                self.manifest.size
            ));
        }
        Ok(())
    }
}

pub struct Updater {
    settings: UpdateSettings,
    running: String,
    boot: BootInfo,
    autoboot: Result<AutoBoot, String>,
    state: UpdateState,
    detail: String,
    /// The offer the state is about, and its manifest once verified.
    offer: Option<[u8; 32]>,
    image: Option<Manifest>,
    transfer: Option<Transfer>,
    refused: Vec<[u8; 32]>,
    last_status: Option<Instant>,
    /// A trial boot's deadline, and whether the collector has seen it.
    trial_until: Option<Instant>,
    acknowledged: bool,
    reboot: Option<(Instant, Action)>,
}

fn read_autoboot(path: &Path) -> Result<AutoBoot, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    AutoBoot::parse(&text)
}

impl Updater {
    pub fn new(mut settings: UpdateSettings, running: &str, now: Instant) -> Updater {
        let boot = BootInfo::read(&settings.bootloader, &settings.cmdline);
        if settings.partitions == AUTO {
            // Beside the partition autoboot.txt is on.
            let mount = settings
                .remount
                .clone()
                .or_else(|| settings.autoboot.parent().map(Path::to_path_buf))
                .unwrap_or_default();
            let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
            settings.partitions =
                super::boot::partitions_beside(&mounts, &mount).unwrap_or_default();
        }
        let autoboot = read_autoboot(&settings.autoboot);
        let mut u = Updater {
            running: running.to_string(),
            boot,
            autoboot,
            state: UpdateState::Idle,
            detail: String::new(),
            offer: None,
            image: None,
            transfer: None,
            refused: Vec::new(),
            last_status: None,
            trial_until: None,
            acknowledged: false,
            reboot: None,
            settings,
        };
        match &u.autoboot {
            Ok(a) if boot.tryboot && boot.partition == a.trial => {
                u.state = UpdateState::Trial;
                u.trial_until = Some(now + u.settings.trial);
            }
            Ok(_) => {}
            Err(e) => u.detail = format!("no updates: {e}"),
        }
        u
    }

    pub fn state(&self) -> UpdateState {
        self.state
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    pub fn boot(&self) -> BootInfo {
        self.boot
    }

    fn refuse(&mut self, offer: [u8; 32], why: String) {
        eprintln!("pitapd: update refused: {why}");
        self.transfer = None;
        self.state = UpdateState::Refused;
        self.offer = Some(offer);
        self.detail = why;
        if self.refused.len() == REFUSED_KEPT {
            self.refused.remove(0);
        }
        self.refused.push(offer);
        // Said at once, so the collector stops offering it.
        self.last_status = None;
    }

    /// What the collector sent.
    pub fn take(&mut self, data: &UpdateData, now: Instant) {
        if self.state == UpdateState::Trial
            && data.seen_running == self.running
            && data.seen_state == UpdateState::Trial
        {
            self.acknowledged = true;
        }
        if matches!(
            self.state,
            UpdateState::Trial | UpdateState::Written | UpdateState::RollingBack
        ) {
            // A trial finishes before anything new is written; a written
            // image, or a trial that failed, waits for its reboot.
            return;
        }
        if data.manifest.is_empty() {
            if self.transfer.take().is_some() {
                eprintln!("pitapd: update withdrawn by the collector");
                self.state = UpdateState::Idle;
                self.offer = None;
                self.image = None;
            }
            return;
        }
        let offer = pitap_wire::update::offer_id(&data.manifest);
        if self.offer != Some(offer) {
            self.offer(data, offer, now);
        }
        self.chunk(data, offer, now);
    }

    /// A new offer: checked, and the transfer begun if it is one to take.
    fn offer(&mut self, data: &UpdateData, offer: [u8; 32], now: Instant) {
        let manifest = &data.manifest[..];
        if self.refused.contains(&offer) {
            return;
        }
        self.transfer = None;
        self.image = None;
        let manifest = match Manifest::verify(manifest, &self.settings.key) {
            Ok(m) => m,
            Err(e) => return self.refuse(offer, format!("manifest: {e}")),
        };
        self.offer = Some(offer);
        self.image = Some(manifest.clone());
        // The image is known by its bytes, not its version string: the
        // partition running holds it already (a trial just committed, or
        // an offer repeated) or it does not.
        let running = match (&self.autoboot, self.boot.partition) {
            (_, p @ 1..) => Some(p),
            (Ok(a), _) => Some(a.active),
            (Err(_), _) => None,
        };
        let holds = running.is_some_and(|p| {
            partition_digest(&self.settings.partition(p), manifest.size)
                .is_ok_and(|d| d == manifest.sha256)
        });
        if holds {
            if self.state != UpdateState::Committed {
                self.state = UpdateState::Current;
            }
            self.detail.clear();
            self.last_status = None;
            return;
        }
        if !self.settings.partitions.contains("{n}") {
            return self.refuse(
                offer,
                "no partition device known (update.partitions = \"auto\" found no disk mounted there)"
                    .into(),
            );
        }
        let target = match &self.autoboot {
            Ok(a) if self.boot.partition == 0 || self.boot.partition == a.active => a.trial,
            Ok(a) => {
                return self.refuse(
                    offer,
                    format!(
                        "running from partition {}, not autoboot.txt's active {}",
                        self.boot.partition, a.active
                    ),
                )
            }
            Err(e) => return self.refuse(offer, e.clone()),
        };
        let path = self.settings.partition(target);
        match PartitionWriter::open(&path, manifest.clone()) {
            Ok(writer) => {
                eprintln!(
                    "pitapd: update {} ({} bytes) offered: writing partition {target} ({})",
                    manifest.version,
                    manifest.size,
                    path.display()
                );
                self.state = UpdateState::Receiving;
                self.detail.clear();
                let raw = data.encoding == ImageEncoding::Raw;
                self.transfer = Some(Transfer {
                    offer,
                    stream_len: if data.stream_len > 0 {
                        data.stream_len
                    } else {
                        manifest.size
                    },
                    manifest,
                    writer,
                    pos: 0,
                    inflater: (!raw).then(|| flate2::Decompress::new(false)),
                    inflated: if raw { Vec::new() } else { vec![0; 1 << 16] },
                    ahead: BTreeMap::new(),
                    asked_until: 0,
                    asked_at: None,
                    moved: now,
                });
                self.last_status = None;
            }
            Err(e) => self.refuse(offer, format!("{e}")),
        }
    }

    fn chunk(&mut self, data: &UpdateData, offer: [u8; 32], now: Instant) {
        let Some(t) = self.transfer.as_mut().filter(|t| t.offer == offer) else {
            return;
        };
        // Pieces as the pulls ask for them, and no others: what waits past
        // a gap stays within a window of 1 KiB chunks.
        if data.data.is_empty()
            || data.data.len() > UPDATE_CHUNK
            || !data.offset.is_multiple_of(UPDATE_CHUNK as u64)
        {
            return;
        }
        let next = t.pos;
        let window_end = next + (MAX_WANT * UPDATE_CHUNK) as u64;
        if data.offset > next && data.offset < window_end {
            t.ahead
                .entry(data.offset)
                .or_insert_with(|| data.data.clone());
            return;
        }
        if data.offset != next {
            return; // Already written, or far ahead: asked again later.
        }
        let mut result = t.take(&data.data);
        while result.is_ok() && !t.writer.is_complete() {
            let at = t.pos;
            // Pieces that overlap what is written start too early: dropped.
            t.ahead.retain(|&o, _| o >= at);
            let Some(bytes) = t.ahead.remove(&at) else {
                break;
            };
            result = t.take(&bytes);
        }
        t.moved = now;
        if let Err(e) = result {
            return self.refuse(offer, format!("image: {e}"));
        }
        if t.writer.is_complete() {
            self.finish(now);
        }
    }

    fn finish(&mut self, now: Instant) {
        let Some(t) = self.transfer.take() else {
            return;
        };
        let offer = t.offer;
        match t.writer.finish() {
            Ok(m) => {
                eprintln!(
                    "pitapd: update {} written and read back ({} bytes, SHA-256 matches the signed manifest): rebooting to try it",
                    m.version, m.size
                );
                self.state = UpdateState::Written;
                self.last_status = None;
                self.reboot = Some((now + REBOOT_DELAY, Action::Reboot { tryboot: true }));
            }
            Err(e) => self.refuse(offer, format!("image: {e}")),
        }
    }

    /// Swaps autoboot.txt's partitions: the trial partition boots from now on.
    fn commit(&mut self) -> Result<(), String> {
        let a = self.autoboot.clone()?;
        let committed = a.committed().render();
        let path = &self.settings.autoboot;
        let remount = |rw: bool| match &self.settings.remount {
            Some(m) => crate::sys::power::remount(m, rw)
                .map_err(|e| format!("remount {}: {e}", m.display())),
            None => Ok(()),
        };
        remount(true)?;
        // Written beside and renamed over: a power cut leaves the old
        // file or the new one, never half of one.
        let mut tmp = path.clone().into_os_string();
        tmp.push(".new");
        let tmp = PathBuf::from(tmp);
        let written = std::fs::write(&tmp, &committed)
            .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| format!("{}: {e}", path.display()));
        // The rename's directory entry on the card too.
        if let Some(dir) = path.parent() {
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        let back = remount(false);
        written?;
        back?;
        self.autoboot = Ok(a.committed());
        Ok(())
    }

    /// The status to send now, if one is due, and what to do.
    pub fn poll(&mut self, now: Instant, healthy: bool) -> (Option<UpdateStatus>, Option<Action>) {
        if self.state == UpdateState::Trial {
            if healthy && self.acknowledged {
                match self.commit() {
                    Ok(()) => {
                        eprintln!(
                            "pitapd: trial of {} healthy and acknowledged: committed (partition {} boots from now on)",
                            self.running, self.boot.partition
                        );
                        self.state = UpdateState::Committed;
                        self.detail.clear();
                    }
                    Err(e) => {
                        self.state = UpdateState::RollingBack;
                        self.detail = format!("commit failed: {e}");
                    }
                }
                self.last_status = None;
            } else if self.trial_until.is_some_and(|t| now >= t) {
                self.state = UpdateState::RollingBack;
                let missing = match (healthy, self.acknowledged) {
                    (false, false) => {
                        "neither healthy (the bridge whole) nor acknowledged by the collector"
                    }
                    (false, true) => "not healthy (the bridge whole)",
                    _ => "not acknowledged by the collector",
                };
                self.detail = format!(
                    "{missing} within {} s of the trial boot",
                    self.settings.trial.as_secs()
                );
                self.last_status = None;
            }
            if self.state == UpdateState::RollingBack {
                eprintln!(
                    "pitapd: trial of {}: {}: rebooting into the old partition",
                    self.running, self.detail
                );
                self.reboot = Some((now + REBOOT_DELAY, Action::Reboot { tryboot: false }));
            }
        }
        let action = match self.reboot {
            Some((at, action)) if now >= at => Some(action),
            _ => None,
        };
        (self.status_due(now), action)
    }

    fn status_due(&mut self, now: Instant) -> Option<UpdateStatus> {
        let every = if self.state == UpdateState::Trial {
            TRIAL_STATUS_EVERY
        } else {
            STATUS_EVERY
        };
        let mut want = Vec::new();
        if let Some(t) = self.transfer.as_mut() {
            let next = t.pos;
            let half = (MAX_WANT * UPDATE_CHUNK / 2) as u64;
            // Bytes past a gap show a loss at once: the gap is asked for
            // again after a short while, not a whole stall.
            let since_ask = t.asked_at.map(|a| now.duration_since(a));
            let stalled = since_ask.is_some_and(|d| d >= STALL)
                && now.duration_since(t.moved) >= STALL
                || (!t.ahead.is_empty() && since_ask.is_some_and(|d| d >= GAP_WAIT));
            if t.asked_at.is_none() || next + half >= t.asked_until || stalled {
                let chunk = UPDATE_CHUNK as u64;
                let mut at = next;
                while want.len() < MAX_WANT && at < t.stream_len {
                    if !t.ahead.contains_key(&at) {
                        want.push(at);
                    }
                    at += chunk;
                }
                t.asked_until = at;
                t.asked_at = Some(now);
            }
        }
        if want.is_empty()
            && self
                .last_status
                .is_some_and(|t| now.duration_since(t) < every)
        {
            return None;
        }
        self.last_status = Some(now);
        let (version, have, total) = match (&self.image, &self.transfer) {
            (Some(m), Some(t)) => (m.version.clone(), t.writer.received(), m.size),
            (Some(m), None)
                if matches!(
                    self.state,
                    UpdateState::Written | UpdateState::Current | UpdateState::Committed
                ) =>
            {
                (m.version.clone(), m.size, m.size)
            }
            (Some(m), None) => (m.version.clone(), 0, m.size),
            (None, _) => (String::new(), 0, 0),
        };
        Some(UpdateStatus {
            running: self.running.clone(),
            partition: self.boot.partition,
            state: self.state,
            offer: self.offer.unwrap_or_default(),
            version,
            have,
            total,
            want,
            detail: self.detail.clone(),
        })
    }

    /// For the status file.
    pub fn status_json(&self) -> serde_json::Value {
        serde_json::json!({
            "state": self.state.as_str(),
            "running": self.running,
            "partition": self.boot.partition,
            "tryboot": self.boot.tryboot,
            "detail": self.detail,
            "version": self.image.as_ref().map(|m| m.version.clone()),
            "have": self.transfer.as_ref().map(|t| t.writer.received()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitap_wire::update::signing_key;

    struct Card {
        dir: PathBuf,
    }

    impl Card {
        fn new(tag: &str, cmdline: &str) -> Card {
            let dir = std::env::temp_dir().join(format!("pitap-upd-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("p2"), vec![2u8; 1 << 21]).unwrap();
            std::fs::write(dir.join("p3"), vec![0u8; 1 << 21]).unwrap();
            std::fs::write(
                dir.join("autoboot.txt"),
                AutoBoot {
                    active: 2,
                    trial: 3,
                }
                .render(),
            )
            .unwrap();
            std::fs::write(dir.join("cmdline"), cmdline).unwrap();
            Card { dir }
        }

        fn settings(&self) -> UpdateSettings {
            UpdateSettings {
                key: signing_key([9; 32]).verifying_key(),
                autoboot: self.dir.join("autoboot.txt"),
                remount: None,
                partitions: format!("{}/p{{n}}", self.dir.display()),
                trial: Duration::from_secs(30),
                bootloader: self.dir.join("none"),
                cmdline: self.dir.join("cmdline"),
            }
        }
    }

    impl Drop for Card {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn data(manifest: &[u8], offset: u64, bytes: &[u8]) -> UpdateData {
        UpdateData {
            manifest: manifest.to_vec(),
            offset,
            data: bytes.to_vec(),
            ..UpdateData::default()
        }
    }

    #[test]
    fn chunks_out_of_order_and_lost_are_asked_again_and_the_image_written() {
        let card = Card::new("order", "pitap.boot_partition=2");
        let t0 = Instant::now();
        let mut u = Updater::new(card.settings(), "1.0", t0);
        let image: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let signed = Manifest::of("2.0", &image)
            .unwrap()
            .sign(&signing_key([9; 32]));
        u.take(&data(&signed, 0, &[]), t0);
        assert_eq!(u.state(), UpdateState::Receiving);
        let (status, _) = u.poll(t0, true);
        let want = status.unwrap().want;
        assert_eq!(want.len(), MAX_WANT.min(image.len().div_ceil(UPDATE_CHUNK)));
        assert_eq!(want[0], 0);
        let chunk = |at: u64| {
            let from = at as usize;
            data(
                &signed,
                at,
                &image[from..(from + UPDATE_CHUNK).min(image.len())],
            )
        };
        // Pieces not on a chunk boundary, or larger than a chunk, are not
        // taken (nor kept).
        u.take(&data(&signed, 1, &image[1..UPDATE_CHUNK + 1]), t0);
        u.take(&data(&signed, 0, &image[..2 * UPDATE_CHUNK]), t0);
        assert_eq!(
            u.transfer.as_ref().map(|t| (t.pos, t.ahead.len())),
            Some((0, 0))
        );
        // Chunk 0 is lost; the others arrive backwards.
        for &at in want[1..].iter().rev() {
            u.take(&chunk(at), t0);
        }
        // Nothing is asked again at once; after the gap wait, only the gap
        // and what lies past the window.
        assert!(u.poll(t0, true).0.is_none());
        let later = t0 + GAP_WAIT;
        let again = u.poll(later, true).0.unwrap().want;
        assert_eq!(again[0], 0);
        assert!(!again.contains(&(UPDATE_CHUNK as u64)), "{again:?}");
        u.take(&chunk(0), later);
        let mut now = later;
        while u.state() == UpdateState::Receiving {
            now += STALL;
            let want = u.poll(now, true).0.map(|s| s.want).unwrap_or_default();
            for at in want {
                u.take(&chunk(at), now);
            }
        }
        assert_eq!(u.state(), UpdateState::Written, "{}", u.detail());
        let p3 = std::fs::read(card.dir.join("p3")).unwrap();
        assert_eq!(&p3[..image.len()], &image[..]);
        // The reboot comes after the status had its time to leave.
        assert_eq!(u.poll(now, true).1, None);
        assert_eq!(
            u.poll(now + REBOOT_DELAY, true).1,
            Some(Action::Reboot { tryboot: true })
        );
    }

    fn deflated(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_deflated_image_is_inflated_into_the_partition_and_a_short_stream_refused() {
        let card = Card::new("deflate", "pitap.boot_partition=2");
        let t0 = Instant::now();
        let mut u = Updater::new(card.settings(), "1.0", t0);
        // Compressible and not: text-like runs and noise.
        // With a run of zeros, as a file system has: one piece of the stream
        // then gives more than the inflater's buffer, and the rest comes out
        // of calls that take no input.
        let image: Vec<u8> = (0..1_500_000u32)
            .map(|i| {
                if (400_000..900_000).contains(&i) {
                    0
                } else if i % 3000 < 2000 {
                    b"kernel "[i as usize % 7]
                } else {
                    (i.wrapping_mul(2_654_435_761) >> 24) as u8
                }
            })
            .collect();
        let signed = Manifest::of("2.0", &image)
            .unwrap()
            .sign(&signing_key([9; 32]));
        let stream = deflated(&image);
        assert!(stream.len() < image.len() / 2, "{}", stream.len());
        let piece = |at: u64| UpdateData {
            manifest: signed.clone(),
            encoding: ImageEncoding::Deflate,
            stream_len: stream.len() as u64,
            offset: at,
            data: stream[at as usize..(at as usize + UPDATE_CHUNK).min(stream.len())].to_vec(),
            ..UpdateData::default()
        };
        u.take(
            &UpdateData {
                data: Vec::new(),
                ..piece(0)
            },
            t0,
        );
        let mut now = t0;
        while u.state() == UpdateState::Receiving {
            now += STALL;
            let want = u.poll(now, true).0.map(|s| s.want).unwrap_or_default();
            assert!(want.iter().all(|&w| w < stream.len() as u64));
            for at in want.into_iter().rev() {
                u.take(&piece(at), now);
            }
        }
        assert_eq!(u.state(), UpdateState::Written, "{}", u.detail());
        let p3 = std::fs::read(card.dir.join("p3")).unwrap();
        assert_eq!(&p3[..image.len()], &image[..]);

        // A stream that ends before the image does: refused, no reboot.
        let card = Card::new("deflate-short", "pitap.boot_partition=2");
        let mut u = Updater::new(card.settings(), "1.0", t0);
        let short = deflated(&image[..image.len() / 2]);
        let piece = |at: u64| UpdateData {
            manifest: signed.clone(),
            encoding: ImageEncoding::Deflate,
            stream_len: short.len() as u64,
            offset: at,
            data: short[at as usize..(at as usize + UPDATE_CHUNK).min(short.len())].to_vec(),
            ..UpdateData::default()
        };
        let mut at = 0;
        while at < short.len() as u64 {
            u.take(&piece(at), t0);
            at += UPDATE_CHUNK as u64;
        }
        assert_eq!(u.state(), UpdateState::Refused);
        assert!(
            u.detail().contains("ended after 750000 of 1500000"),
            "{}",
            u.detail()
        );
        assert_eq!(u.poll(t0 + Duration::from_secs(9), true).1, None);
    }

    #[test]
    fn a_trial_commits_only_healthy_and_acknowledged_and_times_out_otherwise() {
        let card = Card::new("trial", "pitap.boot_partition=3 pitap.tryboot=1");
        let t0 = Instant::now();
        let mut u = Updater::new(card.settings(), "2.0", t0);
        assert_eq!(u.state(), UpdateState::Trial);
        // Acknowledged, but not healthy: no commit.
        let ack = UpdateData {
            seen_running: "2.0".into(),
            seen_state: UpdateState::Trial,
            ..UpdateData::default()
        };
        u.take(&ack, t0);
        assert_eq!(u.poll(t0, false).1, None);
        assert_eq!(u.state(), UpdateState::Trial);
        // Healthy and acknowledged: committed, autoboot.txt swapped.
        u.poll(t0, true);
        assert_eq!(u.state(), UpdateState::Committed);
        let text = std::fs::read_to_string(card.dir.join("autoboot.txt")).unwrap();
        assert_eq!(
            AutoBoot::parse(&text).unwrap(),
            AutoBoot {
                active: 3,
                trial: 2
            }
        );

        // Another trial that the collector never sees: back after the time.
        let card = Card::new("late", "pitap.boot_partition=3 pitap.tryboot=1");
        let mut u = Updater::new(card.settings(), "2.0", t0);
        let stale = UpdateData {
            seen_running: "1.0".into(),
            seen_state: UpdateState::Idle,
            ..UpdateData::default()
        };
        u.take(&stale, t0);
        assert_eq!(u.poll(t0 + Duration::from_secs(29), true).1, None);
        u.poll(t0 + Duration::from_secs(30), true);
        assert_eq!(u.state(), UpdateState::RollingBack);
        assert_eq!(
            u.poll(t0 + Duration::from_secs(31), true).1,
            Some(Action::Reboot { tryboot: false })
        );
        let text = std::fs::read_to_string(card.dir.join("autoboot.txt")).unwrap();
        assert_eq!(
            AutoBoot::parse(&text).unwrap(),
            AutoBoot {
                active: 2,
                trial: 3
            }
        );
    }

    #[test]
    fn an_offer_the_running_partition_holds_is_current_and_a_forged_one_refused_once() {
        let card = Card::new("cur", "pitap.boot_partition=2");
        let t0 = Instant::now();
        let mut u = Updater::new(card.settings(), "1.0", t0);
        let running = vec![2u8; 5000];
        let signed = Manifest::of("1.0-again", &running)
            .unwrap()
            .sign(&signing_key([9; 32]));
        u.take(&data(&signed, 0, &[]), t0);
        assert_eq!(u.state(), UpdateState::Current);
        let forged = Manifest::of("3.0", &[1, 2, 3])
            .unwrap()
            .sign(&signing_key([8; 32]));
        u.take(&data(&forged, 0, &[]), t0);
        assert_eq!(u.state(), UpdateState::Refused);
        assert!(u.detail().contains("signature"), "{}", u.detail());
        let status = u.poll(t0, true).0.unwrap();
        assert_eq!(status.offer, pitap_wire::update::offer_id(&forged));
        // Not checked again for every answer that repeats it.
        u.take(&data(&forged, 0, &[]), t0);
        assert_eq!(u.refused.len(), 1);
    }
}
