//! Raw DEFLATE (RFC 1951) for one batch: at most [`MAX_INPUT`] bytes in,
//! one block out (dynamic Huffman codes, or the fixed ones when those come
//! out smaller). Any inflater reads it; the collector's is miniz_oxide's.
//!
//! Why not miniz_oxide's compressor, which the tap used before: it is
//! built for streams, and each call set up about 290 KB of tables
//! (dictionary, hash chains, code buffer) for a batch of under 3 KB, which
//! was more than half of what deflating cost the tap. Here the tables are
//! sized for one batch (about 31 KB: the latest position of each of 4,096
//! hashes, the tokens, the output, the Huffman builder's space) and kept
//! by the writer from batch to batch, so deflating allocates nothing.

/// The largest input: a batch built for deflating ([`crate::codec::MAX_INFLATED`]).
pub const MAX_INPUT: usize = crate::codec::MAX_INFLATED;

const HASH_BITS: u32 = 12;
const HASH_SIZE: usize = 1 << HASH_BITS;
const MIN_MATCH: usize = 3;
/// The shortest match the matcher looks for (it reads four bytes at once).
const MIN_FOUND: usize = 4;
const MAX_MATCH: usize = 258;

/// Base lengths of codes 257..=285 and their extra bits.
const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
/// Base distances of codes 0..=29 and their extra bits.
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
/// The order code length code lengths are sent in (RFC 1951 3.2.7).
const CL_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// 288 as in the fixed code (RFC 1951 3.2.6), whose canonical codes count
/// the two symbols no block uses; a dynamic code gives them none.
const LITLEN_SYMBOLS: usize = 288;
const DIST_SYMBOLS: usize = 30;

/// How often each symbol of the two alphabets occurs in a block's tokens.
struct Freqs {
    lit: [u32; LITLEN_SYMBOLS],
    dist: [u32; DIST_SYMBOLS],
}

/// A literal (`dist == 0`) or a match.
#[derive(Clone, Copy, Default)]
struct Token {
    len_or_lit: u16,
    dist: u16,
}

/// The fixed literal/length code lengths (RFC 1951 3.2.6).
const FIXED_LIT: [u8; LITLEN_SYMBOLS] = {
    let mut t = [8u8; LITLEN_SYMBOLS];
    let mut i = 144;
    while i < 256 {
        t[i] = 9;
        i += 1;
    }
    while i < 280 {
        t[i] = 7;
        i += 1;
    }
    t
};

/// The length code (0..=28, i.e. symbol - 257) of every match length.
const LEN_CODE: [u8; MAX_MATCH + 1] = {
    let mut t = [0u8; MAX_MATCH + 1];
    let mut code = 0;
    let mut len = MIN_MATCH;
    while len <= MAX_MATCH {
        while code + 1 < LEN_BASE.len() && LEN_BASE[code + 1] as usize <= len {
            code += 1;
        }
        t[len] = code as u8;
        len += 1;
    }
    t
};

/// The distance code of every distance a batch can have.
const DIST_CODE: [u8; MAX_INPUT + 1] = {
    let mut t = [0u8; MAX_INPUT + 1];
    let mut code = 0;
    let mut dist = 1;
    while dist <= MAX_INPUT {
        while code + 1 < DIST_BASE.len() && DIST_BASE[code + 1] as usize <= dist {
            code += 1;
        }
        t[dist] = code as u8;
        dist += 1;
    }
    t
};

fn len_code(len: usize) -> usize {
    usize::from(LEN_CODE[len])
}

fn dist_code(dist: usize) -> usize {
    usize::from(DIST_CODE[dist])
}

/// LSB-first bits into a bounded buffer; `None` once it overflows.
struct Bits<'a> {
    out: &'a mut [u8],
    len: usize,
    acc: u64,
    count: u32,
    overflow: bool,
}

impl Bits<'_> {
    /// At most 32 bits wait in the accumulator; they go out four bytes at
    /// a time (a byte at a time was a loop for every code).
    fn put(&mut self, value: u32, bits: u32) {
        self.acc |= u64::from(value) << self.count;
        self.count += bits;
        if self.count >= 32 {
            match self.out.get_mut(self.len..self.len + 4) {
                Some(b) => b.copy_from_slice(&(self.acc as u32).to_le_bytes()),
                None => self.overflow = true,
            }
            self.len += 4;
            self.acc >>= 32;
            self.count -= 32;
        }
    }

    /// A Huffman code, as [`canonical`] gives it (already bit-reversed).
    fn code(&mut self, code: u16, len: u8) {
        debug_assert!((1..=15).contains(&len), "a used symbol has a code");
        self.put(u32::from(code), u32::from(len));
    }

    fn finish(self) -> Option<usize> {
        let tail = self.count.div_ceil(8) as usize;
        let bytes = self.acc.to_le_bytes();
        let end = self.len + tail;
        match self.out.get_mut(self.len..end) {
            Some(b) if !self.overflow => {
                b.copy_from_slice(&bytes[..tail]);
                Some(end)
            }
            _ => None,
        }
    }
}

/// Code lengths of at most `limit` bits for `freqs` (a zero frequency gets
/// no code); at least two symbols get one, so every code is complete.
fn code_lengths<const N: usize>(freqs: &[u32; N], limit: u8, h: &mut Huff) -> [u8; N] {
    let mut freqs = *freqs;
    // Complete codes only: one symbol alone, or none, gets a partner.
    for i in 0..N {
        if freqs.iter().filter(|&&f| f > 0).count() >= 2 {
            break;
        }
        if freqs[i] == 0 {
            freqs[i] = 1;
        }
    }
    huffman_lengths(&freqs, limit, h)
}

/// The Huffman builder's work space, kept with the deflater: every entry
/// is written before it is read, so nothing is cleared between builds.
struct Huff {
    leaves: [(u32, u16); LITLEN_SYMBOLS],
    spare: [(u32, u16); LITLEN_SYMBOLS],
    /// Moffat and Katajainen's array: weights (sums of up to 288 `u32`
    /// weights need 64 bits), then parents, then depths.
    a: [u64; LITLEN_SYMBOLS],
}

impl Default for Huff {
    fn default() -> Self {
        Huff {
            leaves: [(0, 0); LITLEN_SYMBOLS],
            spare: [(0, 0); LITLEN_SYMBOLS],
            a: [0; LITLEN_SYMBOLS],
        }
    }
}

/// Huffman code lengths of at most `limit` bits: leaves sorted by weight,
/// then Moffat and Katajainen's in-place method ("In-place calculation of
/// minimum-redundancy codes", 1995), which turns the sorted weights into
/// lengths in three passes over one array, without a tree of nodes; a code
/// too deep is then flattened as JPEG does it (ITU T.81 K.3), moving
/// leaves up in pairs, which keeps it complete. (Building again from
/// halved weights, as before, took a second build in one batch of four.)
fn huffman_lengths<const N: usize>(freqs: &[u32; N], limit: u8, h: &mut Huff) -> [u8; N] {
    let Huff { leaves, spare, a } = h;
    let mut n = 0;
    for (i, &f) in freqs.iter().enumerate() {
        if f > 0 {
            leaves[n] = (f, i as u16);
            n += 1;
        }
    }
    let leaves = &mut leaves[..n];
    sort_by_weight(leaves, spare);
    let a = &mut a[..n];
    for (x, &(f, _)) in a.iter_mut().zip(leaves.iter()) {
        *x = u64::from(f);
    }
    let mut lengths = [0u8; N];
    if n < 2 {
        // One symbol alone: one bit (code_lengths gives it a partner).
        if let Some(&(_, symbol)) = leaves.first() {
            lengths[usize::from(symbol)] = 1;
        }
        return lengths;
    }
    // Pass 1: each internal node's weight, and then its parent's index,
    // in the array's front (leaves are read from `leaf`, nodes from `root`).
    a[0] += a[1];
    let (mut root, mut leaf) = (0, 2);
    for next in 1..n - 1 {
        if leaf >= n || a[root] < a[leaf] {
            a[next] = a[root];
            a[root] = next as u64;
            root += 1;
        } else {
            a[next] = a[leaf];
            leaf += 1;
        }
        if leaf >= n || (root < next && a[root] < a[leaf]) {
            a[next] += a[root];
            a[root] = next as u64;
            root += 1;
        } else {
            a[next] += a[leaf];
            leaf += 1;
        }
    }
    // Pass 2: internal nodes' depths, from the root down.
    a[n - 2] = 0;
    for next in (0..n - 2).rev() {
        a[next] = a[a[next] as usize] + 1;
    }
    // Pass 3: leaves' depths, deepest (the lightest leaves) first.
    let (mut avail, mut depth) = (1usize, 0u64);
    let mut root = n as isize - 2;
    let mut next = n as isize - 1;
    while avail > 0 {
        let mut used = 0;
        while root >= 0 && a[root as usize] == depth {
            used += 1;
            root -= 1;
        }
        while avail > used {
            a[next as usize] = depth;
            next -= 1;
            avail -= 1;
        }
        avail = 2 * used;
        depth += 1;
    }
    // a[0] is the lightest leaf, so the deepest.
    if a[0] > u64::from(limit) {
        limit_depth(a, limit);
    }
    for (&len, &(_, symbol)) in a.iter().zip(leaves.iter()) {
        lengths[usize::from(symbol)] = len as u8;
    }
    lengths
}

/// Rewrites `depths` (non-increasing, a complete code) into a complete code
/// of at most `limit` bits whose deepest leaves are still the first ones.
fn limit_depth(depths: &mut [u64], limit: u8) {
    let limit = usize::from(limit);
    // Leaves at each depth; a code of n leaves is at most n - 1 deep.
    let mut count = [0u32; LITLEN_SYMBOLS + 1];
    for &d in depths.iter() {
        count[(d as usize).min(LITLEN_SYMBOLS)] += 1;
    }
    for i in (limit + 1..=LITLEN_SYMBOLS).rev() {
        while count[i] > 0 {
            // Two leaves at depth i go: one moves up to i - 1 (taking
            // their parent's place), and a leaf at j < i - 1 becomes a
            // node over the other and itself at j + 1.
            // One exists while 2^limit >= the leaves (15 bits for 288
            // symbols, 7 for 19).
            let Some(j) = (1..i - 1).rev().find(|&j| count[j] > 0) else {
                return;
            };
            count[i] -= 2;
            count[i - 1] += 1;
            count[j + 1] += 2;
            count[j] -= 1;
        }
    }
    // Deepest first, to the lightest leaves.
    let mut k = 0;
    for d in (1..=limit).rev() {
        for _ in 0..count[d] {
            if let Some(slot) = depths.get_mut(k) {
                *slot = d as u64;
            }
            k += 1;
        }
    }
}

/// Sorts leaves (in symbol order) by weight, ties kept in symbol order:
/// what `sort_unstable` on (weight, symbol) gives, by two stable passes of
/// a 64-bucket counting sort, since a batch's weights are under 4,096. A
/// general sort of the leaves was a third of what deflating cost.
fn sort_by_weight(leaves: &mut [(u32, u16)], spare: &mut [(u32, u16)]) {
    const BITS: u32 = 6;
    const BUCKETS: usize = 1 << BITS;
    if leaves.iter().any(|&(f, _)| f >= 1 << (2 * BITS)) {
        leaves.sort_unstable();
        return;
    }
    let spare = &mut spare[..leaves.len()];
    for shift in [0, BITS] {
        let bucket = |f: u32| ((f >> shift) as usize) & (BUCKETS - 1);
        let mut start = [0usize; BUCKETS + 1];
        for &(f, _) in leaves.iter() {
            start[bucket(f) + 1] += 1;
        }
        for b in 0..BUCKETS {
            start[b + 1] += start[b];
        }
        for &leaf in leaves.iter() {
            let b = bucket(leaf.0);
            spare[start[b]] = leaf;
            start[b] += 1;
        }
        leaves.copy_from_slice(spare);
    }
}

/// Canonical codes for `lengths` (RFC 1951 3.2.2), bit-reversed for [`Bits`].
fn canonical<const N: usize>(lengths: &[u8; N]) -> [u16; N] {
    let mut count = [0u16; 16];
    for &l in lengths.iter() {
        count[usize::from(l)] += 1;
    }
    count[0] = 0;
    let mut next = [0u16; 16];
    let mut code = 0u16;
    for bits in 1..16 {
        code = (code + count[bits - 1]) << 1;
        next[bits] = code;
    }
    let mut codes = [0u16; N];
    for (i, &l) in lengths.iter().enumerate() {
        if l > 0 {
            // Sent most significant bit first: reversed once here rather
            // than at every use.
            codes[i] = next[usize::from(l)].reverse_bits() >> (16 - u32::from(l));
            next[usize::from(l)] += 1;
        }
    }
    codes
}

/// The first four bytes at `i` (the caller keeps `i + 4 <= input.len()`).
fn first4(input: &[u8], i: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&input[i..i + 4]);
    u32::from_le_bytes(b)
}

fn hash4(v: u32) -> usize {
    (v.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize
}

/// How many leading bytes `a` and `b` share (at most `b.len()`), eight at
/// a time.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let mut n = 0;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let (x, y) = (
            u64::from_le_bytes(x.try_into().unwrap_or([0; 8])),
            u64::from_le_bytes(y.try_into().unwrap_or([0; 8])),
        );
        if x != y {
            return n + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    n + a[n..]
        .iter()
        .zip(&b[n..])
        .take_while(|(x, y)| x == y)
        .count()
}

/// The latest earlier position of each hash of four bytes, + 1 (0: none).
/// One candidate a position: more (hash chains) found about 1 % more in a
/// batch for twice the matcher's instructions. Nothing is cleared between
/// inputs (clearing was a twentieth of what deflating cost): an entry left
/// from an input before is only a candidate like any other, taken if it
/// lies before `i` and its bytes in this input match.
struct Latest {
    head: [u16; HASH_SIZE],
}

impl Latest {
    /// Remembers position `i`, whose first four bytes are `v`.
    fn insert(&mut self, v: u32, i: usize) {
        self.head[hash4(v)] = (i + 1) as u16;
    }

    /// The earlier match at `i` (first four bytes `v`), as (length,
    /// distance), before `i` is remembered; (0, 0) when the candidate's
    /// first four bytes differ.
    fn longest(&self, input: &[u8], i: usize, v: u32) -> (usize, usize) {
        let cand = usize::from(self.head[hash4(v)]);
        if cand == 0 || cand > i {
            return (0, 0);
        }
        let j = cand - 1;
        if first4(input, j) != v {
            return (0, 0);
        }
        let max = (input.len() - i).min(MAX_MATCH);
        (
            4 + common_prefix(&input[j + 4..], &input[i + 4..i + max]),
            i - j,
        )
    }
}

/// The tables one deflate works in (about 31 KB), kept by a writer from
/// batch to batch: nothing is cleared for a new input (see [`Latest`]).
pub struct Deflater {
    toks: [Token; MAX_INPUT],
    latest: Latest,
    /// Fixed Huffman codes take at most 9 bits a byte: twice the input
    /// always holds a block.
    out: [u8; 2 * MAX_INPUT],
    huff: Huff,
}

impl Default for Deflater {
    fn default() -> Self {
        Deflater {
            toks: [Token::default(); MAX_INPUT],
            latest: Latest {
                head: [0; HASH_SIZE],
            },
            out: [0; 2 * MAX_INPUT],
            huff: Huff::default(),
        }
    }
}

impl Deflater {
    /// The LZ77 pass: greedy, over the whole input, matches of four bytes
    /// or more (a three-byte match rarely codes shorter than its literals).
    /// Counts the symbols into `freqs` on the way (a pass over the tokens
    /// the less).
    fn tokens(&mut self, input: &[u8], freqs: &mut Freqs) -> usize {
        let latest = &mut self.latest;
        let (mut n, mut i) = (0, 0);
        while i + MIN_FOUND <= input.len() {
            let v = first4(input, i);
            let (len, dist) = latest.longest(input, i, v);
            latest.insert(v, i);
            if len >= MIN_FOUND {
                self.toks[n] = Token {
                    len_or_lit: len as u16,
                    dist: dist as u16,
                };
                freqs.lit[257 + len_code(len)] += 1;
                freqs.dist[dist_code(dist)] += 1;
                // The match's last positions are remembered too.
                let end = (i + len).min(input.len() + 1 - MIN_FOUND);
                for k in (i + 1).max(end.saturating_sub(2))..end {
                    latest.insert(first4(input, k), k);
                }
                i += len;
            } else {
                self.toks[n] = Token {
                    len_or_lit: u16::from(input[i]),
                    dist: 0,
                };
                freqs.lit[usize::from(input[i])] += 1;
                i += 1;
            }
            n += 1;
        }
        for &b in &input[i..] {
            self.toks[n] = Token {
                len_or_lit: u16::from(b),
                dist: 0,
            };
            freqs.lit[usize::from(b)] += 1;
            n += 1;
        }
        n
    }

    /// Deflates `input` into the deflater's own buffer, which always holds
    /// the block; None if the input is longer than [`MAX_INPUT`].
    pub fn deflate_here(&mut self, input: &[u8]) -> Option<&[u8]> {
        if input.len() > MAX_INPUT {
            return None;
        }
        let mut freqs = Freqs {
            lit: [0; LITLEN_SYMBOLS],
            dist: [0; DIST_SYMBOLS],
        };
        let n = self.tokens(input, &mut freqs);
        let len = encode(&self.toks[..n], freqs, &mut self.out, &mut self.huff)?;
        Some(&self.out[..len])
    }
}

/// Deflates `input` (at most [`MAX_INPUT`] bytes) into `out` with tables
/// of its own (on the stack): the length written, or None if it does not
/// fit `out` (or the input is too long).
pub fn deflate(input: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut d = Deflater::default();
    let packed = d.deflate_here(input)?;
    out.get_mut(..packed.len())?.copy_from_slice(packed);
    Some(packed.len())
}

/// One block of `toks`, with whichever codes come out smaller.
fn encode(toks: &[Token], freqs: Freqs, out: &mut [u8], h: &mut Huff) -> Option<usize> {
    let Freqs {
        lit: mut lit_freq,
        dist: dist_freq,
    } = freqs;
    lit_freq[256] = 1;
    let lit_len = code_lengths(&lit_freq, 15, h);
    let dist_len = code_lengths(&dist_freq, 15, h);
    // The fixed codes (RFC 1951 3.2.6), for when they come out smaller.
    let fixed_lit = FIXED_LIT;
    let fixed_dist = [5u8; DIST_SYMBOLS];
    let cost = |lit: &[u8; LITLEN_SYMBOLS], dist: &[u8; DIST_SYMBOLS]| -> u64 {
        let mut bits = 0u64;
        for (&f, &l) in lit_freq.iter().zip(lit.iter()) {
            bits += u64::from(f) * u64::from(l);
        }
        for (&f, &extra) in lit_freq[257..].iter().zip(LEN_EXTRA.iter()) {
            bits += u64::from(f) * u64::from(extra);
        }
        for (s, &f) in dist_freq.iter().enumerate() {
            bits += u64::from(f) * u64::from(dist[s] + DIST_EXTRA[s]);
        }
        bits
    };
    let header = DynamicHeader::new(&lit_len, &dist_len, h);
    let dynamic_bits = cost(&lit_len, &dist_len) + header.bits();
    let fixed_bits = cost(&fixed_lit, &fixed_dist);
    let mut bits = Bits {
        out,
        len: 0,
        acc: 0,
        count: 0,
        overflow: false,
    };
    // BFINAL, then BTYPE.
    bits.put(1, 1);
    let (lit, dist) = if dynamic_bits < fixed_bits {
        bits.put(2, 2);
        header.write(&mut bits);
        (lit_len, dist_len)
    } else {
        bits.put(1, 2);
        (fixed_lit, fixed_dist)
    };
    let lit_codes = canonical(&lit);
    let dist_codes = canonical(&dist);
    for t in toks {
        if t.dist == 0 {
            let s = usize::from(t.len_or_lit);
            bits.code(lit_codes[s], lit[s]);
        } else {
            let len = usize::from(t.len_or_lit);
            let lc = len_code(len);
            bits.code(lit_codes[257 + lc], lit[257 + lc]);
            bits.put(
                (len - usize::from(LEN_BASE[lc])) as u32,
                u32::from(LEN_EXTRA[lc]),
            );
            let d = usize::from(t.dist);
            let dc = dist_code(d);
            bits.code(dist_codes[dc], dist[dc]);
            bits.put(
                (d - usize::from(DIST_BASE[dc])) as u32,
                u32::from(DIST_EXTRA[dc]),
            );
        }
    }
    bits.code(lit_codes[256], lit[256]);
    bits.finish()
}

/// A dynamic block's header: the code lengths, run-length coded with
/// their own Huffman code (RFC 1951 3.2.7).
struct DynamicHeader {
    hlit: usize,
    hdist: usize,
    /// (symbol 0..=18, extra bits value)
    runs: [(u8, u8); LITLEN_SYMBOLS + DIST_SYMBOLS],
    n_runs: usize,
    cl_len: [u8; 19],
    hclen: usize,
}

impl DynamicHeader {
    fn new(lit: &[u8; LITLEN_SYMBOLS], dist: &[u8; DIST_SYMBOLS], h: &mut Huff) -> DynamicHeader {
        let hlit = 257.max(LITLEN_SYMBOLS - lit.iter().rev().take_while(|&&l| l == 0).count());
        let hdist = 1.max(DIST_SYMBOLS - dist.iter().rev().take_while(|&&l| l == 0).count());
        let mut all = [0u8; LITLEN_SYMBOLS + DIST_SYMBOLS];
        all[..hlit].copy_from_slice(&lit[..hlit]);
        all[hlit..hlit + hdist].copy_from_slice(&dist[..hdist]);
        let all = &all[..hlit + hdist];
        let mut runs = [(0u8, 0u8); LITLEN_SYMBOLS + DIST_SYMBOLS];
        let mut n_runs = 0;
        let mut i = 0;
        while i < all.len() {
            let l = all[i];
            let run = all[i..].iter().take_while(|&&x| x == l).count();
            if l == 0 && run >= 11 {
                let r = run.min(138);
                runs[n_runs] = (18, (r - 11) as u8);
                i += r;
            } else if l == 0 && run >= 3 {
                runs[n_runs] = (17, (run - 3) as u8);
                i += run;
            } else if l != 0 && run >= 4 {
                // The length once, then repeats of it.
                runs[n_runs] = (l, 0);
                n_runs += 1;
                let r = (run - 1).min(6);
                runs[n_runs] = (16, (r - 3) as u8);
                i += 1 + r;
            } else {
                runs[n_runs] = (l, 0);
                i += 1;
            }
            n_runs += 1;
        }
        let mut freq = [0u32; 19];
        for &(s, _) in &runs[..n_runs] {
            freq[usize::from(s)] += 1;
        }
        let cl_len = code_lengths(&freq, 7, h);
        let hclen = 4.max(
            19 - CL_ORDER
                .iter()
                .rev()
                .take_while(|&&s| cl_len[s] == 0)
                .count(),
        );
        DynamicHeader {
            hlit,
            hdist,
            runs,
            n_runs,
            cl_len,
            hclen,
        }
    }

    fn bits(&self) -> u64 {
        let mut b = 5 + 5 + 4 + 3 * self.hclen as u64;
        for &(s, _) in &self.runs[..self.n_runs] {
            b += u64::from(self.cl_len[usize::from(s)]);
            b += match s {
                16 => 2,
                17 => 3,
                18 => 7,
                _ => 0,
            };
        }
        b
    }

    fn write(&self, bits: &mut Bits<'_>) {
        bits.put((self.hlit - 257) as u32, 5);
        bits.put((self.hdist - 1) as u32, 5);
        bits.put((self.hclen - 4) as u32, 4);
        for &s in &CL_ORDER[..self.hclen] {
            bits.put(u32::from(self.cl_len[s]), 3);
        }
        let codes = canonical(&self.cl_len);
        for &(s, extra) in &self.runs[..self.n_runs] {
            let s = usize::from(s);
            bits.code(codes[s], self.cl_len[s]);
            match s {
                16 => bits.put(u32::from(extra), 2),
                17 => bits.put(u32::from(extra), 3),
                18 => bits.put(u32::from(extra), 7),
                _ => {}
            }
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::test_rng::xorshift;

    fn inflate(packed: &[u8]) -> Vec<u8> {
        miniz_oxide::inflate::decompress_to_vec(packed).expect("inflates")
    }

    fn roundtrip(input: &[u8]) -> usize {
        let mut out = [0u8; 2 * MAX_INPUT + 64];
        let n = deflate(input, &mut out).expect("fits");
        assert_eq!(inflate(&out[..n]), input, "{} bytes", input.len());
        n
    }

    #[test]
    fn shapes_round_trip_through_miniz() {
        roundtrip(b"");
        roundtrip(b"a");
        roundtrip(b"ab");
        roundtrip(&[7u8; MAX_INPUT]);
        roundtrip(&(0..MAX_INPUT).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        roundtrip(b"abcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabc");
        // Runs longer than one match.
        roundtrip(&[b"x".repeat(300), b"y".repeat(600), b"xy".repeat(200)].concat());
    }

    #[test]
    fn random_inputs_round_trip() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || xorshift(&mut x);
        for _ in 0..400 {
            let len = (next() % MAX_INPUT as u64) as usize;
            // From noise to a few symbols with repeats: every block shape.
            let alphabet = 1 + next() % 256;
            let mut v = Vec::with_capacity(len);
            while v.len() < len {
                if next() % 4 == 0 && v.len() > 8 {
                    let back = 1 + (next() as usize % v.len().min(300));
                    let n = 3 + (next() as usize % 40);
                    for _ in 0..n {
                        let b = v[v.len() - back];
                        v.push(b);
                    }
                } else {
                    v.push((next() % alphabet) as u8);
                }
            }
            v.truncate(len);
            roundtrip(&v);
        }
    }

    #[test]
    fn weights_sort_as_a_general_sort_does() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut spare = [(0u32, 0u16); LITLEN_SYMBOLS];
        for round in 0..300 {
            xorshift(&mut x);
            let n = (x % LITLEN_SYMBOLS as u64) as usize + 1;
            // Small weights with many ties, large ones, and some past the
            // counting sort's reach (the general sort's path).
            let top = [4u64, 300, 4095, 70_000][round % 4];
            let mut leaves: Vec<(u32, u16)> = (0..n)
                .map(|s| {
                    xorshift(&mut x);
                    ((x % top) as u32 + 1, s as u16)
                })
                .collect();
            let mut want = leaves.clone();
            want.sort_unstable();
            sort_by_weight(&mut leaves, &mut spare);
            assert_eq!(leaves, want, "round {round}");
        }
    }

    /// Whether the codes of `lengths` (0: no code) fill the code space
    /// exactly (Kraft's sum is 1): a complete prefix code.
    fn complete(lengths: &[u8]) -> bool {
        let kraft: u128 = lengths
            .iter()
            .filter(|&&l| l > 0)
            .map(|&l| 1u128 << (96 - u32::from(l)))
            .sum();
        kraft == 1 << 96
    }

    /// Σ weight × depth of a Huffman code built with a heap, the textbook
    /// way: the cost any optimal code has.
    fn optimal_cost(freqs: &[u32]) -> u64 {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let mut heap: BinaryHeap<Reverse<u64>> = freqs
            .iter()
            .filter(|&&f| f > 0)
            .map(|&f| Reverse(u64::from(f)))
            .collect();
        let mut cost = 0;
        while heap.len() > 1 {
            let (Reverse(a), Reverse(b)) = (heap.pop().unwrap(), heap.pop().unwrap());
            cost += a + b;
            heap.push(Reverse(a + b));
        }
        cost
    }

    #[test]
    fn lengths_are_optimal_and_complete() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut h = Huff::default();
        for round in 0..2_000 {
            xorshift(&mut x);
            let used = 2 + (x % (LITLEN_SYMBOLS as u64 - 1)) as usize;
            let top = [3u64, 50, 3000, 100_000][round % 4];
            let mut freqs = [0u32; LITLEN_SYMBOLS];
            for f in freqs.iter_mut().take(used) {
                xorshift(&mut x);
                // Some symbols unused, the rest skewed (x % top of x % top).
                *f = if x.is_multiple_of(5) {
                    0
                } else {
                    ((x >> 8) % ((x >> 40) % top + 1)) as u32 + 1
                };
            }
            if freqs.iter().filter(|&&f| f > 0).count() < 2 {
                continue;
            }
            let lengths = huffman_lengths(&freqs, 255, &mut h);
            let cost: u64 = freqs
                .iter()
                .zip(&lengths)
                .map(|(&f, &l)| u64::from(f) * u64::from(l))
                .sum();
            assert_eq!(cost, optimal_cost(&freqs), "round {round}");
            // A complete code, and only used symbols have one.
            assert!(complete(&lengths), "round {round}");
            for (f, l) in freqs.iter().zip(&lengths) {
                assert_eq!(*f > 0, *l > 0);
            }
        }
    }

    #[test]
    fn a_deflater_kept_across_inputs_round_trips_every_one() {
        // Long inputs leave entries everywhere; shorter and different ones
        // after them must not take one that points past where they are.
        let mut d = Deflater::default();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for k in 0..60usize {
            xorshift(&mut x);
            let len = [MAX_INPUT, 40, (x % MAX_INPUT as u64) as usize, 5][k % 4];
            let input: Vec<u8> = (0..len)
                .map(|i| (i % (7 + k % 5) + (x as usize >> (k % 40)) % 9) as u8)
                .collect();
            let packed = d.deflate_here(&input).expect("fits").to_vec();
            assert_eq!(inflate(&packed), input, "input {k}");
        }
    }

    #[test]
    fn limited_lengths_are_complete_and_within_the_limit() {
        let mut h = Huff::default();
        // Fibonacci weights: the deepest code there is for n symbols.
        for (n, limit) in [(19usize, 7u8), (40, 15), (288, 15), (30, 15), (25, 5)] {
            let mut freqs = [0u32; LITLEN_SYMBOLS];
            let (mut a, mut b) = (1u32, 1u32);
            for f in freqs.iter_mut().take(n) {
                *f = a;
                (a, b) = (b, a.saturating_add(b).min(1 << 30));
            }
            let lengths = huffman_lengths(&freqs, limit, &mut h);
            assert!(lengths.iter().all(|&l| l <= limit), "{n} symbols");
            assert!(complete(&lengths), "{n} symbols, limit {limit}");
            // Heavier symbols never get longer codes.
            for w in lengths[..n].windows(2) {
                assert!(w[0] >= w[1], "{n} symbols: {:?}", &lengths[..n]);
            }
        }
        // Random skewed weights through the deflater's own limits.
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..500 {
            let mut freqs = [0u32; 19];
            for f in freqs.iter_mut() {
                xorshift(&mut x);
                *f = 1 << (x % 20);
            }
            let lengths = code_lengths(&freqs, 7, &mut h);
            assert!(lengths.iter().all(|&l| (1..=7).contains(&l)));
            assert!(complete(&lengths));
        }
    }

    #[test]
    fn too_long_or_too_small_a_buffer_is_none() {
        let mut out = [0u8; 8];
        assert!(deflate(&(0..=255).collect::<Vec<u8>>(), &mut out).is_none());
        let mut big = [0u8; 4 * MAX_INPUT];
        assert!(deflate(&vec![0u8; MAX_INPUT + 1], &mut big).is_none());
    }
}
