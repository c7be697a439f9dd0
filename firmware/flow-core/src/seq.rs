//! Sequence gaps: the bytes of a TCP stream the tap never saw (Zeek's
//! `missed_bytes`), from each side's sequence numbers.
//!
//! Each side keeps the end of the highest segment seen. A segment that
//! starts beyond it leaves a gap, counted as missed; a late segment (one
//! reordered, or retransmitted after the loss) that falls into the side's
//! latest gap takes its bytes back. Only the latest gap per side is kept,
//! so a fill of an older gap is not seen: that costs accuracy only when
//! packets arrive reordered across two losses, and keeps the state at 12
//! bytes a side. Zeek's reassembler tracks every hole; it also counts the
//! gaps only of streams it reassembles.

/// Gaps farther than this ahead are not data the tap missed but a bogus or
/// injected segment (a forged RST-less jump); they are ignored.
const MAX_JUMP: u32 = 1 << 30;

/// One side's sequence-space view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Side {
    /// The sequence number after the highest byte seen.
    next: u32,
    /// The latest gap, `[lo, hi)`; empty when `lo == hi`.
    gap_lo: u32,
    gap_hi: u32,
}

/// The missed bytes of one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeqGaps {
    sides: [Side; 2],
    /// Bit `i`: side `i` has a sequence base (a SYN or a first segment).
    known: u8,
    /// Bytes in gaps so far (this part of the flow).
    missed: u32,
}

/// `a` before `b` in sequence space (RFC 1982 arithmetic).
#[inline]
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl SeqGaps {
    /// Bytes missed in this part of the flow.
    pub fn missed(&self) -> u32 {
        self.missed
    }

    /// A new part of the flow (active timeout): the count restarts, the
    /// sequence state goes on.
    pub fn restart_count(&mut self) {
        self.missed = 0;
    }

    /// Notes one segment of side `side` (0 the initiator): its sequence
    /// number, payload length and whether it carries SYN or FIN (each takes
    /// one sequence number). RSTs and bare ACKs carry no stream data and
    /// are not passed here.
    #[inline]
    pub fn segment(&mut self, side: usize, seq: u32, len: u32, syn: bool, fin: bool) {
        let bit = 1u8 << side;
        let s = &mut self.sides[side];
        // The SYN's own number precedes the data.
        let start = seq.wrapping_add(u32::from(syn));
        let end = start.wrapping_add(len).wrapping_add(u32::from(fin));
        if self.known & bit == 0 {
            self.known |= bit;
            *s = Side {
                next: end,
                gap_lo: end,
                gap_hi: end,
            };
            return;
        }
        let ahead = start.wrapping_sub(s.next);
        if ahead != 0 && ahead < MAX_JUMP {
            self.missed = self.missed.saturating_add(ahead);
            s.gap_lo = s.next;
            s.gap_hi = start;
        } else if before(start, s.next) && before(start, s.gap_hi) && before(s.gap_lo, end) {
            // A late segment into the latest gap.
            let lo = if before(start, s.gap_lo) {
                s.gap_lo
            } else {
                start
            };
            let hi = if before(s.gap_hi, end) { s.gap_hi } else { end };
            self.missed = self.missed.saturating_sub(hi.wrapping_sub(lo));
            if lo == s.gap_lo {
                s.gap_lo = hi;
            } else if hi == s.gap_hi {
                s.gap_hi = lo;
            } else {
                // It split the gap: the part after it stays fillable.
                s.gap_lo = hi;
            }
        } else if ahead >= MAX_JUMP && !before(start, s.next) {
            return;
        }
        if before(s.next, end) && end.wrapping_sub(s.next) < MAX_JUMP {
            s.next = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(segments: &[(usize, u32, u32)]) -> u32 {
        let mut g = SeqGaps::default();
        for &(side, seq, len) in segments {
            g.segment(side, seq, len, false, false);
        }
        g.missed()
    }

    #[test]
    fn in_order_stream_misses_nothing() {
        assert_eq!(run(&[(0, 100, 10), (0, 110, 10), (0, 120, 5)]), 0);
    }

    #[test]
    fn a_lost_segment_is_missed() {
        assert_eq!(run(&[(0, 100, 10), (0, 120, 10), (0, 130, 10)]), 10);
    }

    #[test]
    fn a_reordered_segment_takes_its_bytes_back() {
        assert_eq!(run(&[(0, 100, 10), (0, 120, 10), (0, 110, 10)]), 0);
        // Two late segments filling one gap from both ends.
        assert_eq!(
            run(&[(0, 0, 10), (0, 40, 10), (0, 10, 10), (0, 30, 10)]),
            10
        );
        // One in its middle.
        assert_eq!(run(&[(0, 0, 10), (0, 40, 10), (0, 20, 10)]), 20);
    }

    #[test]
    fn retransmissions_and_keepalives_change_nothing() {
        assert_eq!(
            run(&[
                (0, 100, 10),
                (0, 100, 10),
                (0, 109, 1),
                (0, 110, 0),
                (0, 110, 10)
            ]),
            0
        );
    }

    #[test]
    fn sides_are_separate_and_the_first_segment_is_the_base() {
        assert_eq!(run(&[(0, 5000, 10), (1, 9, 10), (1, 19, 10)]), 0);
        assert_eq!(run(&[(0, 5000, 10), (1, 9, 10), (1, 39, 10)]), 20);
    }

    #[test]
    fn syn_and_fin_take_one_number() {
        let mut g = SeqGaps::default();
        g.segment(0, 1000, 0, true, false);
        g.segment(0, 1001, 100, false, false);
        g.segment(0, 1101, 0, false, true);
        assert_eq!(g.missed(), 0);
        // Data after the FIN's number is a gap of one.
        let mut g = SeqGaps::default();
        g.segment(0, 1000, 0, true, false);
        g.segment(0, 1002, 10, false, false);
        assert_eq!(g.missed(), 1);
    }

    #[test]
    fn wraps_around_the_sequence_space() {
        assert_eq!(run(&[(0, u32::MAX - 9, 10), (0, 0, 10), (0, 20, 10)]), 10);
    }

    #[test]
    fn a_wild_jump_is_not_counted() {
        assert_eq!(
            run(&[(0, 100, 10), (0, 100 + (1 << 31), 10), (0, 110, 10)]),
            0
        );
        assert_eq!(
            run(&[(0, 100, 10), (0, 110 + MAX_JUMP, 10), (0, 110, 10)]),
            0
        );
    }

    #[test]
    fn restart_keeps_the_stream() {
        let mut g = SeqGaps::default();
        g.segment(0, 0, 10, false, false);
        g.segment(0, 20, 10, false, false);
        assert_eq!(g.missed(), 10);
        g.restart_count();
        g.segment(0, 30, 10, false, false);
        assert_eq!(g.missed(), 0);
    }
}
