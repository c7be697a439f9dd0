//! One direction of an HTTP connection: TCP bytes in sequence order, cut
//! into message heads and bodies (Content-Length, chunked, until close).

use heapless::Vec as HVec;

use super::head::{self, Coding, Head, StartLine};
use super::FileStats;

/// The longest message head kept; longer heads end the stream's parsing.
pub const HEAD_MAX: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

/// Progress through a chunked body (RFC 9112 7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunk {
    Size {
        value: u64,
        digits: u8,
        ext: bool,
    },
    Data(u64),
    /// The CRLF after a chunk's data.
    AfterData,
    /// Trailer lines; `line_start` when at the start of one.
    Trailer {
        line_start: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for or reading a head.
    Head,
    Body(Framing),
    /// Lost track (a gap in a head, a head too long, not HTTP): bytes are
    /// ignored to the end of the connection.
    Dead,
}

/// Segments that arrived ahead of a gap, held per direction until the
/// gap fills (reordering), in the tracker's shared buffers.
pub const HELD_MAX: usize = 16;

/// A segment waiting in a shared buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub seq: u32,
    pub len: u16,
    pub buffer: u16,
    pub fin: bool,
}

pub struct Direction {
    pub next_seq: Option<u32>,
    pub phase: Phase,
    head: HVec<u8, HEAD_MAX>,
    pub held: HVec<Held, HELD_MAX>,
}

impl Default for Direction {
    fn default() -> Self {
        Direction {
            next_seq: None,
            phase: Phase::Head,
            head: HVec::new(),
            held: HVec::new(),
        }
    }
}

impl Direction {
    pub fn reset(&mut self) {
        self.next_seq = None;
        self.phase = Phase::Head;
        self.head.clear();
        self.held.clear();
    }

    /// How far `seq` is ahead of the next byte expected (negative: behind).
    pub fn ahead(&self, seq: u32) -> i32 {
        self.next_seq.map_or(0, |n| seq.wrapping_sub(n) as i32)
    }

    /// The held segment that comes next: the first one not ahead of the
    /// next byte expected, or with `any`, the nearest.
    pub fn next_held(&self, any: bool) -> Option<usize> {
        // Before the first byte, the lowest sequence number held comes first.
        let base = self.next_seq.or(self.held.first().map(|h| h.seq))?;
        let ahead = |seq: u32| seq.wrapping_sub(base) as i32;
        let (i, h) = self
            .held
            .iter()
            .enumerate()
            .min_by_key(|(_, h)| ahead(h.seq))?;
        (any || self.next_seq.is_none() || ahead(h.seq) <= 0).then_some(i)
    }

    /// Places a segment in the sequence space: the part of `data` not seen
    /// before, and how many bytes went missing just before it.
    pub fn place<'a>(&mut self, seq: u32, data: &'a [u8]) -> (u64, &'a [u8]) {
        let expected = *self.next_seq.get_or_insert(seq);
        let ahead = seq.wrapping_sub(expected) as i32;
        if ahead < 0 {
            let rest = data.get(ahead.unsigned_abs() as usize..).unwrap_or(&[]);
            self.next_seq = Some(expected.wrapping_add(rest.len() as u32));
            (0, rest)
        } else {
            self.next_seq = Some(seq.wrapping_add(data.len() as u32));
            (ahead as u64, data)
        }
    }

    /// Takes bytes of a head; `Some(used)` when it is complete with the
    /// first `used` of `data`. A head longer than `HEAD_MAX` ends parsing.
    pub fn take_head(&mut self, data: &[u8], stats: &mut FileStats) -> Option<usize> {
        let mut data = data;
        let mut skipped = 0;
        if self.head.is_empty() {
            // Line breaks between messages (RFC 9112 2.2).
            let blank = data
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            data = &data[blank..];
            skipped = blank;
            if data.is_empty() {
                return None;
            }
        }
        let old = self.head.len();
        let room = HEAD_MAX - old;
        let take = room.min(data.len());
        // Cannot fail: `take` fits the room left.
        let _ = self.head.extend_from_slice(&data[..take]);
        match head::head_end(&self.head, old).or_else(|| head::http09_end(&self.head)) {
            Some(end) => {
                self.head.truncate(end);
                Some(skipped + end - old)
            }
            None => {
                if self.head.len() == HEAD_MAX {
                    stats.heads_too_long += 1;
                    self.phase = Phase::Dead;
                }
                None
            }
        }
    }

    pub fn head(&self) -> &[u8] {
        &self.head
    }

    pub fn clear_head(&mut self) {
        self.head.clear();
    }
}

/// Chunk framing that is not chunk framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadChunk;

/// Cuts body bytes by the framing; returns (bytes of the body in `data`,
/// bytes of `data` used, whether the body ended). `Err` on broken chunk
/// framing.
pub fn frame_body(framing: &mut Framing, data: &[u8]) -> Result<(usize, usize, bool), BadChunk> {
    match framing {
        Framing::UntilClose => Ok((data.len(), data.len(), false)),
        Framing::Length(left) => {
            let n = (*left).min(data.len() as u64) as usize;
            *left -= n as u64;
            Ok((n, n, *left == 0))
        }
        Framing::Chunked(chunk) => {
            // Framing bytes are walked one at a time up to the next data.
            let mut used = 0;
            while used < data.len() {
                let b = data[used];
                match chunk {
                    Chunk::Data(_) if used > 0 => {
                        // Framing bytes first; the caller calls again for
                        // the data.
                        return Ok((0, used, false));
                    }
                    Chunk::Data(left) => {
                        let n = (*left).min(data.len() as u64) as usize;
                        *left -= n as u64;
                        if *left == 0 {
                            *chunk = Chunk::AfterData;
                        }
                        return Ok((n, n, false));
                    }
                    Chunk::Size { value, digits, ext } => match b {
                        b'\n' if *digits > 0 => {
                            *chunk = if *value == 0 {
                                Chunk::Trailer { line_start: true }
                            } else {
                                Chunk::Data(*value)
                            };
                        }
                        b'\r' | b' ' | b'\t' => {}
                        _ if *ext => {}
                        b';' => *ext = true,
                        _ => {
                            let d = (b as char).to_digit(16).ok_or(BadChunk)?;
                            if *digits >= 15 {
                                return Err(BadChunk);
                            }
                            *value = *value * 16 + u64::from(d);
                            *digits += 1;
                        }
                    },
                    Chunk::AfterData => match b {
                        b'\r' => {}
                        b'\n' => {
                            *chunk = Chunk::Size {
                                value: 0,
                                digits: 0,
                                ext: false,
                            }
                        }
                        _ => return Err(BadChunk),
                    },
                    Chunk::Trailer { line_start } => match b {
                        b'\n' if *line_start => return Ok((0, used + 1, true)),
                        b'\n' => *line_start = true,
                        b'\r' => {}
                        _ => *line_start = false,
                    },
                }
                used += 1;
            }
            Ok((0, used, false))
        }
    }
}

/// How a message's body is framed, by its head and (for a response) the
/// request it answers: `None` when it has none.
pub fn framing(h: &Head<'_>, request_was_head: bool) -> Option<Framing> {
    let no_body = match h.start {
        StartLine::Response { status } => {
            request_was_head || (100..200).contains(&status) || status == 204 || status == 304
        }
        StartLine::Request { .. } => false,
    };
    if no_body {
        return None;
    }
    if h.chunked {
        return Some(Framing::Chunked(Chunk::Size {
            value: 0,
            digits: 0,
            ext: false,
        }));
    }
    match (h.content_length, h.start) {
        (Some(0), _) => None,
        (Some(n), _) => Some(Framing::Length(n)),
        // A request without a length has no body (RFC 9112 6.3).
        (None, StartLine::Request { .. }) => None,
        (None, StartLine::Response { .. }) => Some(Framing::UntilClose),
    }
}

/// Whether a coding needs an inflater.
pub fn needs_inflater(c: Coding) -> bool {
    matches!(c, Coding::Gzip | Coding::Deflate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dechunk(input: &[u8], step: usize) -> Result<(std::vec::Vec<u8>, bool), BadChunk> {
        let mut f = Framing::Chunked(Chunk::Size {
            value: 0,
            digits: 0,
            ext: false,
        });
        let mut out = vec![];
        for piece in input.chunks(step) {
            let mut p = piece;
            while !p.is_empty() {
                let (body, used, end) = frame_body(&mut f, p)?;
                out.extend_from_slice(&p[..body]);
                p = &p[used..];
                if end {
                    return Ok((out, true));
                }
            }
        }
        Ok((out, false))
    }

    #[test]
    fn chunked_bodies_in_any_cut() {
        let body = b"5;name=v\r\nhello\r\n7\r\n, world\r\n0\r\nX-T: 1\r\n\r\n";
        for step in 1..body.len() {
            assert_eq!(
                dechunk(body, step),
                Ok((b"hello, world".to_vec(), true)),
                "{step}"
            );
        }
        assert_eq!(dechunk(b"zz\r\n", 4), Err(BadChunk));
        assert_eq!(dechunk(b"5\r\nhelloXX", 20), Err(BadChunk));
        assert_eq!(dechunk(b"ffffffffffffffff\r\n", 20), Err(BadChunk));
    }

    #[test]
    fn segments_are_placed_in_sequence() {
        let mut d = Direction::default();
        assert_eq!(d.place(1000, b"abcd"), (0, &b"abcd"[..]));
        // A retransmission overlapping the end.
        assert_eq!(d.place(1002, b"cdef"), (0, &b"ef"[..]));
        assert_eq!(d.place(1000, b"ab"), (0, &b""[..]));
        // Four bytes never seen.
        assert_eq!(d.place(1010, b"kl"), (4, &b"kl"[..]));
        assert_eq!(d.next_seq, Some(1012));
        // Across the wrap of the sequence space.
        let mut d = Direction::default();
        d.place(u32::MAX - 1, b"ab");
        assert_eq!(d.place(0, b"cd"), (0, &b"cd"[..]));
    }
}
