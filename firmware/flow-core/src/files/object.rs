//! One object being hashed: its bytes after the content coding is undone,
//! three digests, its size and first bytes, under a size limit and the
//! tracker's byte budget.

use alloc::boxed::Box;

use md5::Md5;
use miniz_oxide::inflate::core::inflate_flags::{
    TINFL_FLAG_HAS_MORE_INPUT, TINFL_FLAG_PARSE_ZLIB_HEADER,
};
use miniz_oxide::inflate::core::{decompress, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;
use pitap_wire::{file_flags, FileHashes};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::head::Coding;
use super::mime::SNIFF_LEN;
use super::FileStats;

/// Bytes per second the tap may hash (0: no limit), in packet time: a
/// token bucket that holds one second's worth.
pub struct Budget {
    rate: u64,
    tokens: u64,
    last_us: u64,
}

impl Budget {
    pub fn new(bytes_per_s: u64) -> Budget {
        Budget {
            rate: bytes_per_s,
            tokens: bytes_per_s,
            last_us: 0,
        }
    }

    /// Takes `n` bytes' worth at `now_us`; `false` when they are not there.
    pub fn take(&mut self, n: u64, now_us: u64) -> bool {
        if self.rate == 0 {
            return true;
        }
        let dt = now_us.saturating_sub(self.last_us);
        self.last_us = self.last_us.max(now_us);
        let refill = (u128::from(dt) * u128::from(self.rate) / 1_000_000) as u64;
        self.tokens = self.tokens.saturating_add(refill).min(self.rate);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// Bytes that are not the gzip or deflate they were said to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotDeflate;

/// A deflate decoder with its 32 KiB window; the tracker keeps a few and
/// lends them to objects that need one.
pub struct Inflater {
    state: DecompressorOxide,
    window: [u8; WINDOW],
    pos: usize,
    /// Gzip header bytes still to skip (`None` once in the deflate data).
    gzip: GzipHeader,
    zlib: bool,
    done: bool,
}

const WINDOW: usize = 32 * 1024;

/// Progress through a gzip member's header (RFC 1952 2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GzipHeader {
    None,
    /// Fixed part: bytes seen of its 10.
    Fixed {
        seen: u8,
        flags: u8,
    },
    ExtraLen {
        seen: u8,
        len: u16,
        flags: u8,
    },
    Extra {
        left: u16,
        flags: u8,
    },
    Name {
        flags: u8,
    },
    Comment {
        flags: u8,
    },
    Crc {
        left: u8,
    },
}

const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FHCRC: u8 = 0x02;

impl Inflater {
    pub fn boxed() -> Box<Inflater> {
        Box::new(Inflater {
            state: DecompressorOxide::new(),
            window: [0; WINDOW],
            pos: 0,
            gzip: GzipHeader::None,
            zlib: false,
            done: false,
        })
    }

    fn reset(&mut self, coding: Coding) {
        self.state.init();
        self.pos = 0;
        self.done = false;
        self.gzip = if coding == Coding::Gzip {
            GzipHeader::Fixed { seen: 0, flags: 0 }
        } else {
            GzipHeader::None
        };
        self.zlib = false;
    }

    /// Skips gzip header bytes; returns what follows the header.
    fn skip_gzip<'a>(&mut self, mut data: &'a [u8]) -> Result<&'a [u8], NotDeflate> {
        while let Some((&b, rest)) = data.split_first() {
            self.gzip = match self.gzip {
                GzipHeader::None => return Ok(data),
                GzipHeader::Fixed { seen, flags } => {
                    if (seen == 0 && b != 0x1f) || (seen == 1 && b != 0x8b) || (seen == 2 && b != 8)
                    {
                        return Err(NotDeflate);
                    }
                    let flags = if seen == 3 { b } else { flags };
                    if seen < 9 {
                        GzipHeader::Fixed {
                            seen: seen + 1,
                            flags,
                        }
                    } else {
                        after(flags, FEXTRA)
                    }
                }
                GzipHeader::ExtraLen { seen, len, flags } => {
                    let len = len | (u16::from(b) << (8 * seen));
                    match (seen, len) {
                        (0, _) => GzipHeader::ExtraLen {
                            seen: 1,
                            len,
                            flags,
                        },
                        (_, 0) => after(flags, FNAME),
                        _ => GzipHeader::Extra { left: len, flags },
                    }
                }
                GzipHeader::Extra { left, flags } => match left {
                    1 => after(flags, FNAME),
                    _ => GzipHeader::Extra {
                        left: left - 1,
                        flags,
                    },
                },
                GzipHeader::Name { flags } if b == 0 => after(flags, FCOMMENT),
                GzipHeader::Comment { flags } if b == 0 => after(flags, FHCRC),
                s @ (GzipHeader::Name { .. } | GzipHeader::Comment { .. }) => s,
                GzipHeader::Crc { left: 1 } => GzipHeader::None,
                GzipHeader::Crc { left } => GzipHeader::Crc { left: left - 1 },
            };
            data = rest;
        }
        Ok(data)
    }

    /// Inflates `data`, handing what comes out to `out`. `Err` on data
    /// that is not deflate.
    fn feed(
        &mut self,
        data: &[u8],
        coding: Coding,
        out: &mut impl FnMut(&[u8]),
    ) -> Result<(), NotDeflate> {
        let mut data = self.skip_gzip(data)?;
        if coding == Coding::Deflate && self.pos == 0 && !self.zlib && data.len() >= 2 {
            // "deflate" is zlib-wrapped by the standard, raw by some servers.
            self.zlib =
                data[0] & 0x0f == 8 && (u16::from(data[0]) << 8 | u16::from(data[1])) % 31 == 0;
            if self.zlib {
                self.state.init();
            }
        }
        let mut flags = TINFL_FLAG_HAS_MORE_INPUT;
        if self.zlib {
            flags |= TINFL_FLAG_PARSE_ZLIB_HEADER;
        }
        while !data.is_empty() && !self.done {
            let (status, used, made) =
                decompress(&mut self.state, data, &mut self.window, self.pos, flags);
            out(&self.window[self.pos..self.pos + made]);
            self.pos = (self.pos + made) & (WINDOW - 1);
            data = &data[used..];
            match status {
                TINFLStatus::Done => self.done = true,
                TINFLStatus::NeedsMoreInput | TINFLStatus::HasMoreOutput => {}
                _ => return Err(NotDeflate),
            }
            if used == 0 && made == 0 {
                break;
            }
        }
        Ok(())
    }
}

/// The header part after `flag`'s (present or not) in gzip order.
fn after(flags: u8, next: u8) -> GzipHeader {
    let order = [FEXTRA, FNAME, FCOMMENT, FHCRC];
    let from = order.iter().position(|&f| f == next).unwrap_or(order.len());
    for &f in &order[from..] {
        if flags & f != 0 {
            return match f {
                FEXTRA => GzipHeader::ExtraLen {
                    seen: 0,
                    len: 0,
                    flags,
                },
                FNAME => GzipHeader::Name { flags },
                FCOMMENT => GzipHeader::Comment { flags },
                _ => GzipHeader::Crc { left: 2 },
            };
        }
    }
    GzipHeader::None
}

/// The object being received in one direction of a stream.
pub struct Object {
    pub active: bool,
    sha256: Sha256,
    sha1: Sha1,
    md5: Md5,
    hashing: bool,
    pub size: u64,
    pub missing: u64,
    pub flags: u8,
    first: [u8; SNIFF_LEN],
    first_len: usize,
    coding: Coding,
    /// The inflater lent to this object, by index.
    pub inflater: Option<u16>,
    /// Bytes of the budget taken for it at its start.
    reserved: u64,
}

impl Default for Object {
    fn default() -> Self {
        Object {
            active: false,
            sha256: Sha256::new(),
            sha1: Sha1::new(),
            md5: Md5::new(),
            hashing: false,
            size: 0,
            missing: 0,
            flags: 0,
            first: [0; SNIFF_LEN],
            first_len: 0,
            coding: Coding::Identity,
            inflater: None,
            reserved: 0,
        }
    }
}

/// What hashing needs from the tracker while bytes flow.
pub struct Ctx<'a> {
    pub budget: &'a mut Budget,
    pub max_size: u64,
    pub now_us: u64,
    pub stats: &'a mut FileStats,
}

impl Object {
    /// Starts an object coded with `coding`; `inflater` is the one lent to
    /// it when the coding needs one.
    pub fn start(&mut self, coding: Coding, inflater: Option<(u16, &mut Inflater)>) {
        self.sha256 = Sha256::new();
        self.sha1 = Sha1::new();
        self.md5 = Md5::new();
        self.active = true;
        self.hashing = true;
        self.size = 0;
        self.missing = 0;
        self.flags = 0;
        self.first_len = 0;
        self.coding = coding;
        self.inflater = None;
        self.reserved = 0;
        match (coding, inflater) {
            (Coding::Identity, _) => {}
            (Coding::Gzip | Coding::Deflate, Some((i, inf))) => {
                inf.reset(coding);
                self.inflater = Some(i);
            }
            _ => self.flags |= file_flags::ENCODED,
        }
    }

    /// Takes the budget for a body of `len` bytes at once (as they travel:
    /// a coded body takes what it inflates to past that as it goes); an
    /// object the budget cannot take whole is not hashed at all.
    pub fn reserve(&mut self, len: u64, ctx: &mut Ctx<'_>) {
        if len > ctx.max_size || !self.hashing {
            return;
        }
        if ctx.budget.take(len, ctx.now_us) {
            self.reserved = len;
        } else {
            self.stop(file_flags::OVER_BUDGET);
        }
    }

    /// Bytes of the body as they travelled (transfer coding undone).
    pub fn body(&mut self, data: &[u8], inflater: Option<&mut Inflater>, ctx: &mut Ctx<'_>) {
        match inflater {
            Some(inf) => {
                let coding = self.coding;
                let mut failed = false;
                let result = inf.feed(data, coding, &mut |out| self.bytes(out, ctx));
                if result.is_err() {
                    failed = true;
                }
                if failed {
                    ctx.stats.inflate_errors += 1;
                    self.flags |= file_flags::INCOMPLETE;
                    self.hashing = false;
                }
            }
            None => self.bytes(data, ctx),
        }
    }

    /// Bytes of the object itself.
    fn bytes(&mut self, data: &[u8], ctx: &mut Ctx<'_>) {
        if data.is_empty() {
            return;
        }
        let take = (SNIFF_LEN - self.first_len).min(data.len());
        self.first[self.first_len..self.first_len + take].copy_from_slice(&data[..take]);
        self.first_len += take;
        self.size += data.len() as u64;
        if !self.hashing {
            return;
        }
        let n = data.len() as u64;
        let from_reserve = self.reserved.min(n);
        self.reserved -= from_reserve;
        if self.size > ctx.max_size {
            self.stop(file_flags::TOO_LARGE);
        } else if n > from_reserve && !ctx.budget.take(n - from_reserve, ctx.now_us) {
            self.stop(file_flags::OVER_BUDGET);
        } else {
            self.sha256.update(data);
            self.sha1.update(data);
            self.md5.update(data);
            ctx.stats.bytes_hashed += data.len() as u64;
        }
    }

    fn stop(&mut self, why: u8) {
        self.flags |= why;
        self.hashing = false;
    }

    /// Bytes that never arrived.
    pub fn gap(&mut self, n: u64) {
        self.missing += n;
        self.stop(file_flags::INCOMPLETE);
    }

    pub fn first_bytes(&self) -> &[u8] {
        &self.first[..self.first_len]
    }

    /// The digests, when the whole object was hashed and `complete`.
    pub fn finish(&mut self, complete: bool) -> Option<FileHashes> {
        self.active = false;
        if !complete {
            self.flags |= file_flags::INCOMPLETE;
        }
        if !self.hashing || !complete {
            return None;
        }
        Some(FileHashes {
            sha256: self.sha256.finalize_reset().into(),
            sha1: self.sha1.finalize_reset().into(),
            md5: self.md5.finalize_reset().into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_refills_by_packet_time() {
        let mut b = Budget::new(1000);
        assert!(b.take(600, 0));
        assert!(!b.take(600, 0));
        assert!(b.take(600, 700_000));
        assert!(Budget::new(0).take(u64::MAX, 0));
    }

    #[test]
    fn gzip_headers_with_every_optional_part_are_skipped() {
        let mut inf = Inflater::boxed();
        inf.reset(Coding::Gzip);
        let mut h = vec![
            0x1f,
            0x8b,
            8,
            FEXTRA | FNAME | FCOMMENT | FHCRC,
            0,
            0,
            0,
            0,
            0,
            3,
        ];
        h.extend_from_slice(&[2, 0, b'x', b'y']);
        h.extend_from_slice(b"name\0comment\0");
        h.extend_from_slice(&[0xaa, 0xbb, 0x42]);
        // Fed a byte at a time, as segments may cut it anywhere.
        let mut rest = vec![];
        for b in &h {
            rest.extend_from_slice(inf.skip_gzip(core::slice::from_ref(b)).unwrap());
        }
        assert_eq!(rest, vec![0x42]);
        inf.reset(Coding::Gzip);
        assert!(inf.skip_gzip(b"\x1f\x8c").is_err());
    }
}
