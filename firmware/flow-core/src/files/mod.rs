//! Files that crossed: HTTP/1.x message bodies reassembled from a flow's
//! TCP segments and hashed (SHA-256, SHA-1, MD5), in fixed memory, under a
//! byte budget per second and a largest object size. One
//! [`pitap_wire::FileRecord`] per body, linked to its flow.
//!
//! - [`head`]: a message head (start line, framing and coding headers).
//! - [`stream`]: one direction's bytes in sequence order, cut into heads
//!   and bodies (Content-Length, chunked, until close).
//! - [`object`]: one body being hashed; gzip/deflate undone by a lent
//!   inflater; the budget.
//! - [`mime`]: the media type from an object's first bytes.
//!
//! Segments are taken in sequence order: a retransmission's old bytes are
//! skipped, a gap marks the object it falls in incomplete (missing bytes
//! counted, no hashes), and a gap in a head ends parsing of that direction.

pub mod head;
pub mod mime;
pub mod object;
pub mod stream;

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::net::IpAddr;

use heapless::Deque;
use pitap_wire::{FileDirection, FileRecord, FlowSink, Text};

use head::StartLine;
use object::{Budget, Ctx, Inflater, Object};
use stream::{frame_body, framing, needs_inflater, Direction, Framing, Held, Phase};

/// Bytes of one shared buffer for a segment held out of order (a full
/// Ethernet frame's payload).
const HELD_BYTES: usize = 1600;

/// Limits of the file tracker; memory for all of it is taken at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileConfig {
    /// HTTP connections followed at once (0: no file records). About
    /// 11 KiB each.
    pub streams: usize,
    /// Objects larger than this are not hashed past it (marked).
    pub max_object_bytes: u64,
    /// Bytes hashed per second of packet time at most (0: no limit).
    pub hash_bytes_per_s: u64,
    /// gzip/deflate bodies undone at once (about 43 KiB each).
    pub inflaters: usize,
    /// Segments held out of order at once, over all connections (1.6 KiB
    /// each); a direction holds at most 16.
    pub held_segments: usize,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            streams: 64,
            max_object_bytes: 64 << 20,
            hash_bytes_per_s: 4 << 20,
            inflaters: 8,
            held_segments: 256,
        }
    }
}

/// What the tracker did, for the health report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileStats {
    /// HTTP connections followed.
    pub streams: u64,
    /// HTTP connections not followed: every stream slot was taken.
    pub streams_full: u64,
    pub objects: u64,
    /// Objects whose whole bytes were hashed.
    pub hashed: u64,
    pub too_large: u64,
    pub over_budget: u64,
    pub incomplete: u64,
    /// Bodies with a content coding not undone.
    pub encoded: u64,
    pub inflate_errors: u64,
    pub heads_too_long: u64,
    /// Directions given up on: not HTTP, or a gap inside a head.
    pub lost_sync: u64,
    /// Segments that came ahead of a gap and were held until it filled.
    pub reordered: u64,
    pub bytes_hashed: u64,
}

/// Requests waiting for their responses (pipelining).
const PIPELINE: usize = 8;

#[derive(Clone, Copy, Debug, Default)]
struct Request {
    method: Text<16>,
    url: Text<255>,
    head: bool,
    http09: bool,
    connect: bool,
}

/// The ends of a flow, initiator first.
#[derive(Clone, Copy, Debug)]
pub struct FlowEnds {
    pub src: (IpAddr, u16),
    pub dst: (IpAddr, u16),
}

struct Stream {
    ends: FlowEnds,
    dirs: [Direction; 2],
    objects: [Object; 2],
    /// Method and URL of each direction's current object, and its status.
    current: [(Request, u16); 2],
    requests: Deque<Request, PIPELINE>,
}

impl Stream {
    fn new() -> Stream {
        Stream {
            ends: FlowEnds {
                src: (IpAddr::V4(core::net::Ipv4Addr::UNSPECIFIED), 0),
                dst: (IpAddr::V4(core::net::Ipv4Addr::UNSPECIFIED), 0),
            },
            dirs: Default::default(),
            objects: Default::default(),
            current: Default::default(),
            requests: Deque::new(),
        }
    }
}

/// A segment of a followed connection, as the engine hands it over.
pub struct Segment<'a> {
    pub from_initiator: bool,
    pub seq: u32,
    pub payload: &'a [u8],
    /// The capture cut the payload short.
    pub cut: bool,
    pub fin: bool,
    pub now_us: u64,
    /// The start of the flow's current part (file records name it).
    pub part_start_us: u64,
}

pub struct FileTracker {
    config: FileConfig,
    streams: Vec<Stream>,
    free: Vec<u16>,
    inflaters: Vec<Box<Inflater>>,
    free_inflaters: Vec<u16>,
    held: Vec<u8>,
    free_held: Vec<u16>,
    budget: Budget,
    stats: FileStats,
}

impl FileTracker {
    pub fn new(config: FileConfig) -> FileTracker {
        let streams = config.streams.min(usize::from(u16::MAX));
        let inflaters = config.inflaters.min(usize::from(u16::MAX));
        let held = config.held_segments.min(usize::from(u16::MAX));
        FileTracker {
            config,
            streams: (0..streams).map(|_| Stream::new()).collect(),
            free: (0..streams as u16).rev().collect(),
            inflaters: (0..inflaters).map(|_| Inflater::boxed()).collect(),
            free_inflaters: (0..inflaters as u16).rev().collect(),
            held: alloc::vec![0; held * HELD_BYTES],
            free_held: (0..held as u16).rev().collect(),
            budget: Budget::new(config.hash_bytes_per_s),
            stats: FileStats::default(),
        }
    }

    pub fn stats(&self) -> &FileStats {
        &self.stats
    }

    /// Starts following a connection whose client just sent an HTTP
    /// request; `None` when every slot is taken (counted).
    pub fn open(&mut self, ends: FlowEnds) -> Option<u16> {
        let Some(slot) = self.free.pop() else {
            self.stats.streams_full += 1;
            return None;
        };
        self.stats.streams += 1;
        let s = &mut self.streams[usize::from(slot)];
        s.ends = ends;
        Some(slot)
    }

    /// Whether both directions of a followed connection ended (FIN each
    /// way, or given up): its slot can go before the flow does.
    pub fn finished(&self, slot: u16) -> bool {
        self.streams.get(usize::from(slot)).is_some_and(|s| {
            s.dirs
                .iter()
                .all(|d| d.phase == Phase::Dead && d.held.is_empty())
                && s.objects.iter().all(|o| !o.active)
        })
    }

    /// Whether the client of a followed connection has sent bytes.
    pub fn client_started(&self, slot: u16) -> bool {
        self.streams
            .get(usize::from(slot))
            .is_some_and(|s| s.dirs[0].next_seq.is_some())
    }

    /// One TCP segment of a followed connection. A segment ahead of a gap
    /// waits (while there is room) for the bytes before it.
    pub fn segment<S: FlowSink + ?Sized>(&mut self, slot: u16, seg: &Segment<'_>, sink: &mut S) {
        let d = usize::from(!seg.from_initiator);
        let Some(s) = self.streams.get_mut(usize::from(slot)) else {
            return;
        };
        if s.dirs[d].phase == Phase::Dead {
            return;
        }
        // A response seen before its request (the tap reads its two ports'
        // rings in turns) waits for the request, like a segment after a gap.
        let before_request = d == 1 && s.dirs[d].next_seq.is_none() && s.requests.is_empty();
        let dir = &mut s.dirs[d];
        if (before_request || dir.ahead(seg.seq) > 0) && !seg.payload.is_empty() && !seg.cut {
            if seg.payload.len() <= HELD_BYTES && !dir.held.is_full() {
                if let Some(buffer) = self.free_held.pop() {
                    let at = usize::from(buffer) * HELD_BYTES;
                    self.held[at..at + seg.payload.len()].copy_from_slice(seg.payload);
                    // Cannot fail: checked not full.
                    let _ = dir.held.push(Held {
                        seq: seg.seq,
                        len: seg.payload.len() as u16,
                        buffer,
                        fin: seg.fin,
                    });
                    self.stats.reordered += 1;
                    return;
                }
            }
            // No room to wait: what is held goes first, gaps and all.
            self.drain(slot, d, true, seg, sink);
        }
        self.take(slot, d, seg.seq, seg.payload, seg.cut, seg.fin, seg, sink);
        self.drain(slot, d, false, seg, sink);
        if d == 0 && !self.streams[usize::from(slot)].requests.is_empty() {
            // Responses that came first.
            self.drain(slot, 1, false, seg, sink);
        }
    }

    /// Takes the held segments of direction `d` that are in order now
    /// (with `all`, every one, gaps and all).
    fn drain<S: FlowSink + ?Sized>(
        &mut self,
        slot: u16,
        d: usize,
        all: bool,
        seg: &Segment<'_>,
        sink: &mut S,
    ) {
        let mut buf = [0u8; HELD_BYTES];
        loop {
            let dir = &mut self.streams[usize::from(slot)].dirs[d];
            let Some(i) = dir.next_held(all) else {
                return;
            };
            let h = dir.held.swap_remove(i);
            let (at, n) = (usize::from(h.buffer) * HELD_BYTES, usize::from(h.len));
            buf[..n].copy_from_slice(&self.held[at..at + n]);
            self.free_held.push(h.buffer);
            if dir.phase != Phase::Dead {
                self.take(slot, d, h.seq, &buf[..n], false, h.fin, seg, sink);
            }
        }
    }

    /// Bytes of direction `d` at `seq`, in order or after a gap.
    #[allow(clippy::too_many_arguments)]
    fn take<S: FlowSink + ?Sized>(
        &mut self,
        slot: u16,
        d: usize,
        seq: u32,
        payload: &[u8],
        cut: bool,
        fin: bool,
        seg: &Segment<'_>,
        sink: &mut S,
    ) {
        let s = &mut self.streams[usize::from(slot)];
        let (gap, mut data) = s.dirs[d].place(seq, payload);
        if gap > 0 {
            self.gap(slot, d, gap, seg, sink);
        }
        while !data.is_empty() {
            let s = &mut self.streams[usize::from(slot)];
            match s.dirs[d].phase {
                Phase::Dead => break,
                Phase::Head => {
                    let http09 = d == 1 && s.requests.front().is_some_and(|r| r.http09);
                    if http09 && s.dirs[1].head().is_empty() {
                        // An HTTP/0.9 response is the bare body until close.
                        let req = s.requests.pop_front().unwrap_or_default();
                        self.start(slot, d, req, 0, head::Coding::Identity, seg.now_us);
                        self.streams[usize::from(slot)].dirs[d].phase =
                            Phase::Body(Framing::UntilClose);
                        continue;
                    }
                    match s.dirs[d].take_head(data, &mut self.stats) {
                        Some(used) => {
                            data = &data[used..];
                            self.on_head(slot, d, seg.now_us);
                        }
                        None => break,
                    }
                }
                Phase::Body(mut f) => match frame_body(&mut f, data) {
                    Ok((body, used, end)) => {
                        s.dirs[d].phase = Phase::Body(f);
                        self.body(slot, d, &data[..body], seg.now_us);
                        data = &data[used..];
                        if end {
                            self.finish(slot, d, true, seg, sink);
                            self.streams[usize::from(slot)].dirs[d].phase = Phase::Head;
                        }
                    }
                    Err(stream::BadChunk) => self.lose(slot, d, seg, sink),
                },
            }
        }
        let s = &mut self.streams[usize::from(slot)];
        if cut && s.dirs[d].phase != Phase::Dead {
            // What the packet carried past the capture is unknown.
            self.lose(slot, d, seg, sink);
        } else if fin {
            let until_close = s.dirs[d].phase == Phase::Body(Framing::UntilClose);
            self.finish(slot, d, until_close, seg, sink);
            self.streams[usize::from(slot)].dirs[d].phase = Phase::Dead;
        }
    }

    /// The connection ended: a body that runs until close is complete,
    /// any other unfinished one is not. The slot is free again.
    pub fn close<S: FlowSink + ?Sized>(
        &mut self,
        slot: u16,
        now_us: u64,
        part_start_us: u64,
        sink: &mut S,
    ) {
        if self.streams.get(usize::from(slot)).is_none() {
            return;
        };
        let seg = Segment {
            from_initiator: true,
            seq: 0,
            payload: &[],
            cut: false,
            fin: true,
            now_us,
            part_start_us,
        };
        for d in 0..2 {
            self.drain(slot, d, true, &seg, sink);
        }
        let s = &self.streams[usize::from(slot)];
        let complete = [0, 1].map(|d| s.dirs[d].phase == Phase::Body(Framing::UntilClose));
        for (d, complete) in complete.into_iter().enumerate() {
            self.finish(slot, d, complete, &seg, sink);
        }
        let s = &mut self.streams[usize::from(slot)];
        for d in &mut s.dirs {
            d.reset();
        }
        s.requests.clear();
        self.free.push(slot);
    }

    fn on_head(&mut self, slot: u16, d: usize, now_us: u64) {
        let s = &mut self.streams[usize::from(slot)];
        let parsed = head::parse(s.dirs[d].head());
        let Some(h) = parsed else {
            s.dirs[d].phase = Phase::Dead;
            self.stats.lost_sync += 1;
            return;
        };
        let mut next = Phase::Head;
        let mut start = None;
        match (h.start, d) {
            (
                StartLine::Request {
                    method,
                    target,
                    host,
                    http09,
                },
                0,
            ) => {
                let req = Request {
                    method: Text::from_bytes(method),
                    url: head::url(target, host),
                    head: method == b"HEAD",
                    http09,
                    connect: method == b"CONNECT",
                };
                if s.requests.is_full() {
                    s.requests.pop_front();
                }
                // Cannot fail: room was just made.
                let _ = s.requests.push_back(req);
                if let Some(f) = framing(&h, false) {
                    next = Phase::Body(f);
                    start = Some((req, 0));
                }
            }
            (StartLine::Response { status }, 1) => {
                if (100..200).contains(&status) && status != 101 {
                    // Interim: the request still waits for its response.
                } else {
                    let req = s.requests.pop_front().unwrap_or_default();
                    if status == 101 || (req.connect && (200..300).contains(&status)) {
                        // Another protocol from here on.
                        next = Phase::Dead;
                    } else if let Some(f) = framing(&h, req.head) {
                        next = Phase::Body(f);
                        start = Some((req, status));
                    }
                }
            }
            _ => {
                next = Phase::Dead;
                self.stats.lost_sync += 1;
            }
        }
        let coding = h.coding;
        s.dirs[d].clear_head();
        s.dirs[d].phase = next;
        if let Some((req, status)) = start {
            self.start(slot, d, req, status, coding, now_us);
        }
    }

    fn start(
        &mut self,
        slot: u16,
        d: usize,
        req: Request,
        status: u16,
        coding: head::Coding,
        now_us: u64,
    ) {
        let s = &mut self.streams[usize::from(slot)];
        s.current[d] = (req, status);
        let lent = if needs_inflater(coding) {
            self.free_inflaters.pop()
        } else {
            None
        };
        let inflater = lent.map(|i| (i, &mut *self.inflaters[usize::from(i)]));
        s.objects[d].start(coding, inflater);
        // A body of known length is hashed whole or not at all: its share
        // of the budget is taken now.
        if let Phase::Body(Framing::Length(n)) = s.dirs[d].phase {
            let mut ctx = Ctx {
                budget: &mut self.budget,
                max_size: self.config.max_object_bytes,
                now_us,
                stats: &mut self.stats,
            };
            s.objects[d].reserve(n, &mut ctx);
        }
    }

    fn body(&mut self, slot: u16, d: usize, data: &[u8], now_us: u64) {
        let s = &mut self.streams[usize::from(slot)];
        let obj = &mut s.objects[d];
        if !obj.active || data.is_empty() {
            return;
        }
        let inflater = obj
            .inflater
            .and_then(|i| self.inflaters.get_mut(usize::from(i)))
            .map(|b| &mut **b);
        let mut ctx = Ctx {
            budget: &mut self.budget,
            max_size: self.config.max_object_bytes,
            now_us,
            stats: &mut self.stats,
        };
        obj.body(data, inflater, &mut ctx);
    }

    /// `n` bytes of direction `d` never arrived.
    fn gap<S: FlowSink + ?Sized>(
        &mut self,
        slot: u16,
        d: usize,
        n: u64,
        seg: &Segment<'_>,
        sink: &mut S,
    ) {
        let s = &mut self.streams[usize::from(slot)];
        match s.dirs[d].phase {
            Phase::Body(Framing::Length(left)) if n < left => {
                s.dirs[d].phase = Phase::Body(Framing::Length(left - n));
                s.objects[d].gap(n);
            }
            Phase::Body(Framing::UntilClose) => s.objects[d].gap(n),
            _ => {
                s.objects[d].gap(n);
                self.lose(slot, d, seg, sink);
            }
        }
    }

    /// Gives up on direction `d`: its object ends incomplete.
    fn lose<S: FlowSink + ?Sized>(&mut self, slot: u16, d: usize, seg: &Segment<'_>, sink: &mut S) {
        self.finish(slot, d, false, seg, sink);
        self.streams[usize::from(slot)].dirs[d].phase = Phase::Dead;
        self.stats.lost_sync += 1;
    }

    /// Ends direction `d`'s object, if one is open, and reports it.
    fn finish<S: FlowSink + ?Sized>(
        &mut self,
        slot: u16,
        d: usize,
        complete: bool,
        seg: &Segment<'_>,
        sink: &mut S,
    ) {
        let s = &mut self.streams[usize::from(slot)];
        let obj = &mut s.objects[d];
        if !obj.active {
            return;
        }
        let hashes = obj.finish(complete);
        if let Some(i) = obj.inflater.take() {
            self.free_inflaters.push(i);
        }
        if obj.size == 0 && obj.missing == 0 {
            return;
        }
        let (req, status) = &s.current[d];
        let record = FileRecord {
            ts_ms: seg.now_us / 1000,
            flow_start_ms: seg.part_start_us / 1000,
            src_addr: s.ends.src.0,
            src_port: s.ends.src.1,
            dst_addr: s.ends.dst.0,
            dst_port: s.ends.dst.1,
            direction: if d == 0 {
                FileDirection::Upload
            } else {
                FileDirection::Download
            },
            method: req.method,
            url: req.url,
            status: *status,
            size: obj.size,
            missing: obj.missing,
            hashes,
            mime: Text::from_bytes(mime::sniff(obj.first_bytes()).as_bytes()),
            flags: obj.flags,
        };
        let st = &mut self.stats;
        st.objects += 1;
        st.hashed += u64::from(hashes.is_some());
        for (bit, counter) in [
            (pitap_wire::file_flags::TOO_LARGE, &mut st.too_large),
            (pitap_wire::file_flags::OVER_BUDGET, &mut st.over_budget),
            (pitap_wire::file_flags::INCOMPLETE, &mut st.incomplete),
            (pitap_wire::file_flags::ENCODED, &mut st.encoded),
        ] {
            *counter += u64::from(record.flags & bit != 0);
        }
        sink.file(&record);
    }
}
