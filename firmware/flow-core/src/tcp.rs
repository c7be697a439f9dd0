//! TCP connection tracking as Zeek does it: an endpoint state per side,
//! Zeek's `conn_state` derived from the pair, and the history string.

use pitap_wire::{ConnState, EndReason, History};

use crate::decode::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use crate::seq::SeqGaps;

/// One side's TCP state (Zeek's `TCP_ENDPOINT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Endpoint {
    #[default]
    Inactive,
    SynSent,
    SynAckSent,
    /// Traffic seen without a SYN.
    Partial,
    Established,
    Closed,
    Reset,
}

impl Endpoint {
    /// Zeek's "inactive": never took part in a handshake.
    fn inactive(self) -> bool {
        matches!(self, Endpoint::Inactive | Endpoint::Partial)
    }
}

/// History letters, one bit each per side.
#[derive(Clone, Copy)]
enum Letter {
    Syn = 0,
    SynAck = 1,
    Ack = 2,
    Data = 3,
    Fin = 4,
    Rst = 5,
    Multi = 6,
}

impl Letter {
    fn ascii(self) -> u8 {
        b"SHADFRQ"[self as usize]
    }
}

/// Per-flow history: the letters in first-seen order, upper case for the
/// initiator and lower case for the responder. Used for every protocol
/// (UDP and ICMP only ever get D/d).
#[derive(Clone, Copy, Debug, Default)]
pub struct HistoryTracker {
    seen: u16,
    pub text: History,
}

impl HistoryTracker {
    #[inline]
    fn note(&mut self, from_initiator: bool, letter: Letter) {
        let bit = 1u16 << (letter as u16 + if from_initiator { 0 } else { 8 });
        if self.seen & bit == 0 {
            self.seen |= bit;
            let c = letter.ascii();
            self.text.push(if from_initiator {
                c
            } else {
                c.to_ascii_lowercase()
            });
        }
    }

    /// Marks a flow whose initiator was decided against the first packet's
    /// direction (Zeek's `^`).
    pub fn flipped(&mut self) {
        self.text.push(b'^');
    }

    /// Notes a non-TCP packet.
    #[inline]
    pub fn note_datagram(&mut self, from_initiator: bool, payload_len: u32) {
        if payload_len > 0 {
            self.note(from_initiator, Letter::Data);
        }
    }
}

/// The TCP part of a flow.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpTracker {
    /// Index 0 is the initiator.
    pub ends: [Endpoint; 2],
    /// Whether each side sent payload (Zeek's `size > 0`).
    pub sent_data: [bool; 2],
    /// Bytes the tap never saw, from the sequence numbers.
    pub gaps: SeqGaps,
}

impl TcpTracker {
    /// Updates the state machine with one segment and notes its history.
    #[inline]
    pub fn update(
        &mut self,
        history: &mut HistoryTracker,
        from_initiator: bool,
        flags: u8,
        seq: u32,
        payload_len: u32,
    ) {
        let (me, peer) = if from_initiator { (0, 1) } else { (1, 0) };
        let syn = flags & TCP_SYN != 0;
        let ack = flags & TCP_ACK != 0;
        let fin = flags & TCP_FIN != 0;
        let rst = flags & TCP_RST != 0;
        // An RST's number need not be in the stream (RFC 5961 allows a
        // window's worth of slack); bare ACKs carry none of it.
        if !rst && (syn || fin || payload_len > 0) {
            self.gaps.segment(me, seq, payload_len, syn, fin);
        }

        if syn && (fin || rst) {
            history.note(from_initiator, Letter::Multi);
        } else if syn && ack {
            history.note(from_initiator, Letter::SynAck);
        } else if syn {
            history.note(from_initiator, Letter::Syn);
        }
        if fin {
            history.note(from_initiator, Letter::Fin);
        }
        if rst {
            history.note(from_initiator, Letter::Rst);
        }
        if payload_len > 0 {
            history.note(from_initiator, Letter::Data);
            self.sent_data[me] = true;
        } else if ack && !syn && !fin && !rst {
            history.note(from_initiator, Letter::Ack);
        }

        let state = self.ends[me];
        let peer_state = self.ends[peer];
        // A SYN from a side that was reset starts its handshake again: the
        // RST was out of window or injected, and the connection went on.
        self.ends[me] = if rst {
            Endpoint::Reset
        } else if syn && !ack {
            match state {
                Endpoint::Inactive | Endpoint::Reset => Endpoint::SynSent,
                other => other,
            }
        } else if syn {
            match state {
                Endpoint::Inactive | Endpoint::SynSent | Endpoint::Reset => Endpoint::SynAckSent,
                other => other,
            }
        } else if state == Endpoint::Reset {
            Endpoint::Reset
        } else if fin {
            Endpoint::Closed
        } else {
            match state {
                // The other side's SYN-ACK answered our SYN: handshake done.
                Endpoint::SynSent if peer_state == Endpoint::SynAckSent => {
                    self.ends[peer] = Endpoint::Established;
                    Endpoint::Established
                }
                // We never sent a SYN but acknowledge a SYN-ACK (the SYN was
                // missed): the connection is up all the same.
                Endpoint::Inactive if peer_state == Endpoint::SynAckSent => {
                    self.ends[peer] = Endpoint::Established;
                    Endpoint::Established
                }
                Endpoint::Inactive => Endpoint::Partial,
                Endpoint::SynAckSent if peer_state == Endpoint::Established => {
                    Endpoint::Established
                }
                other => other,
            }
        };
    }

    /// Zeek's `conn_state` for this connection (base/protocols/conn).
    pub fn conn_state(&self, history: &History) -> ConnState {
        let [os, rs] = self.ends;
        let o_inactive = os.inactive();
        let r_inactive = rs.inactive();
        if rs == Endpoint::Reset {
            if matches!(os, Endpoint::SynSent | Endpoint::SynAckSent)
                || (os == Endpoint::Reset && !self.sent_data[0] && !self.sent_data[1])
            {
                ConnState::REJ
            } else if o_inactive {
                ConnState::RSTRH
            } else {
                ConnState::RSTR
            }
        } else if os == Endpoint::Reset {
            if r_inactive {
                if syn_then_reset_only(history.as_str()) {
                    ConnState::RSTOS0
                } else {
                    ConnState::OTH
                }
            } else {
                ConnState::RSTO
            }
        } else if rs == Endpoint::Closed && os == Endpoint::Closed {
            ConnState::SF
        } else if os == Endpoint::Closed {
            if r_inactive {
                ConnState::SH
            } else {
                ConnState::S2
            }
        } else if rs == Endpoint::Closed {
            if o_inactive {
                ConnState::SHR
            } else {
                ConnState::S3
            }
        } else if os == Endpoint::SynSent && rs == Endpoint::Inactive {
            ConnState::S0
        } else if os == Endpoint::Established && rs == Endpoint::Established {
            ConnState::S1
        } else {
            ConnState::OTH
        }
    }

    /// Whether the connection is over, and how: both sides closed, or one
    /// reset.
    #[inline]
    pub fn ended(&self) -> Option<EndReason> {
        if self.ends.contains(&Endpoint::Reset) {
            Some(EndReason::TcpReset)
        } else if self.ends == [Endpoint::Closed, Endpoint::Closed] {
            Some(EndReason::TcpClose)
        } else {
            None
        }
    }
}

/// Zeek's `/^?S[^HAFGIQ]*R.*/` on the history: the initiator sent a SYN and
/// then a RST with nothing of a handshake or teardown between.
fn syn_then_reset_only(history: &str) -> bool {
    let h = history.strip_prefix('^').unwrap_or(history);
    let Some(rest) = h.strip_prefix('S') else {
        return false;
    };
    for c in rest.chars() {
        match c {
            'R' => return true,
            'H' | 'A' | 'F' | 'G' | 'I' | 'Q' => return false,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYN: u8 = TCP_SYN;
    const SYNACK: u8 = TCP_SYN | TCP_ACK;
    const ACK: u8 = TCP_ACK;
    const FINACK: u8 = TCP_FIN | TCP_ACK;
    const RST: u8 = TCP_RST;
    const RSTACK: u8 = TCP_RST | TCP_ACK;

    /// Runs (from_initiator, flags, payload) segments; returns state and history.
    fn run(segments: &[(bool, u8, u32)]) -> (ConnState, String) {
        let mut t = TcpTracker::default();
        let mut h = HistoryTracker::default();
        for &(dir, flags, len) in segments {
            t.update(&mut h, dir, flags, 0, len);
        }
        (t.conn_state(&h.text), h.text.as_str().to_string())
    }

    #[test]
    fn full_connection_is_sf() {
        let (state, hist) = run(&[
            (true, SYN, 0),
            (false, SYNACK, 0),
            (true, ACK, 0),
            (true, ACK, 100),
            (false, ACK, 200),
            (true, FINACK, 0),
            (false, FINACK, 0),
            (true, ACK, 0),
        ]);
        assert_eq!(state, ConnState::SF);
        assert_eq!(hist, "ShADdFf");
    }

    #[test]
    fn handshake_states() {
        assert_eq!(run(&[(true, SYN, 0)]).0, ConnState::S0);
        assert_eq!(run(&[(true, SYN, 0), (false, RSTACK, 0)]).0, ConnState::REJ);
        assert_eq!(
            run(&[(true, SYN, 0), (false, SYNACK, 0), (true, ACK, 0)]).0,
            ConnState::S1
        );
        assert_eq!(run(&[(true, SYN, 0), (true, RST, 0)]).0, ConnState::RSTOS0);
        assert_eq!(run(&[(true, SYN, 0), (true, FINACK, 0)]).0, ConnState::SH);
        assert_eq!(
            run(&[(false, SYNACK, 0), (false, RST, 0)]).0,
            ConnState::RSTRH
        );
        assert_eq!(
            run(&[(false, SYNACK, 0), (false, FINACK, 0)]).0,
            ConnState::SHR
        );
        assert_eq!(run(&[(true, ACK, 10), (false, ACK, 10)]).0, ConnState::OTH);
    }

    #[test]
    fn resets_and_half_closes() {
        let up = [(true, SYN, 0), (false, SYNACK, 0), (true, ACK, 0)];
        let with = |more: &[(bool, u8, u32)]| {
            let mut all = up.to_vec();
            all.extend_from_slice(more);
            run(&all).0
        };
        assert_eq!(with(&[(true, RSTACK, 0)]), ConnState::RSTO);
        assert_eq!(with(&[(false, RSTACK, 0)]), ConnState::RSTR);
        assert_eq!(with(&[(true, FINACK, 0)]), ConnState::S2);
        assert_eq!(with(&[(false, FINACK, 0)]), ConnState::S3);
    }

    #[test]
    fn end_detection() {
        let mut t = TcpTracker::default();
        let mut h = HistoryTracker::default();
        t.update(&mut h, true, SYN, 0, 0);
        t.update(&mut h, false, SYNACK, 0, 0);
        t.update(&mut h, true, FINACK, 0, 0);
        assert_eq!(t.ended(), None);
        t.update(&mut h, false, FINACK, 0, 0);
        assert_eq!(t.ended(), Some(EndReason::TcpClose));
        t.update(&mut h, true, RST, 0, 0);
        assert_eq!(t.ended(), Some(EndReason::TcpReset));
    }

    #[test]
    fn handshake_after_an_injected_rst_revives_the_connection() {
        let (state, hist) = run(&[
            (true, SYN, 0),
            (false, RSTACK, 0),
            (false, SYNACK, 0),
            (true, ACK, 0),
            (true, ACK, 25),
        ]);
        assert_eq!((state, hist.as_str()), (ConnState::S1, "SrhAD"));
    }

    #[test]
    fn rstos0_pattern() {
        assert!(syn_then_reset_only("SR"));
        assert!(syn_then_reset_only("^SdR"));
        assert!(!syn_then_reset_only("SAR"));
        assert!(!syn_then_reset_only("S"));
        assert!(!syn_then_reset_only("DR"));
    }
}
