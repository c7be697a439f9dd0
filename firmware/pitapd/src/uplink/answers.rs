//! Answers to the collector's packet requests, sent as `Packets` chunks.
//! A request comes in every reply until the collector has the whole answer,
//! saying how much it has stored; the tap sends a window of chunks past
//! that and, when the collector's count stops moving for a while, goes back
//! to it (the collector keeps chunks that arrive out of order). A request
//! answered whole is not answered again; a replayed reply never gets here
//! (the uplink refuses a reply to a datagram already answered).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use pitap_wire::messages::{PacketChunk, PacketRequest, CHUNK_BYTES};

use crate::forensics::Answer;

/// Answers being sent at once; more requests wait in the collector.
const MAX_JOBS: usize = 4;
/// Chunks in flight past what the collector has.
const WINDOW: u64 = 24;
/// No progress for this long: send again from what the collector has.
const STALL: Duration = Duration::from_millis(250);
/// Request ids answered whole, remembered.
const DONE_KEPT: usize = 256;
/// An answer the collector stopped asking for (it went, or said "whole"
/// in replies that were all lost) is dropped after this long.
const ABANDON: Duration = Duration::from_secs(60);

struct Job {
    id: u64,
    answer: Answer,
    /// What the collector has, and the next byte to send.
    have: u64,
    next: u64,
    moved: Instant,
    /// Times sent again without progress since: each waits twice as long.
    stalls: u32,
}

/// What the answers did, for the summary and health.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnswerCounters {
    pub requests: u64,
    pub answered: u64,
    pub abandoned: u64,
    pub chunks: u64,
    pub resent: u64,
}

#[derive(Default)]
pub struct Answers {
    jobs: Vec<Job>,
    /// Requests taken, waiting for the owner of the ring to answer.
    new: Vec<PacketRequest>,
    done: VecDeque<u64>,
    pub counters: AnswerCounters,
}

impl Answers {
    /// The requests of a reply: progress for the answers being sent, new
    /// ones for the ring's owner.
    pub fn take(&mut self, requests: &[PacketRequest], now: Instant) {
        for r in requests {
            if let Some(j) = self.jobs.iter_mut().find(|j| j.id == r.id) {
                let total = j.answer.data.len() as u64;
                if r.have > j.have {
                    j.have = r.have.min(total);
                    j.next = j.next.max(j.have);
                    j.moved = now;
                    j.stalls = 0;
                }
            } else if !self.done.contains(&r.id)
                && !self.new.iter().any(|n| n.id == r.id)
                && self.jobs.len() + self.new.len() < MAX_JOBS
            {
                self.counters.requests += 1;
                self.new.push(r.clone());
            }
        }
        let done = &mut self.done;
        let counters = &mut self.counters;
        self.jobs.retain(|j| {
            let whole = j.have >= j.answer.data.len() as u64;
            if !whole && now.duration_since(j.moved) >= ABANDON {
                counters.abandoned += 1;
                return false;
            }
            if whole {
                if done.len() == DONE_KEPT {
                    done.pop_front();
                }
                done.push_back(j.id);
                counters.answered += 1;
            }
            !whole
        });
    }

    /// Requests for the ring's owner to answer (`start`).
    pub fn new_requests(&mut self) -> Vec<PacketRequest> {
        std::mem::take(&mut self.new)
    }

    pub fn start(&mut self, id: u64, answer: Answer, now: Instant) {
        self.jobs.push(Job {
            id,
            answer,
            have: 0,
            next: 0,
            moved: now,
            stalls: 0,
        });
    }

    pub fn busy(&self) -> bool {
        !self.jobs.is_empty()
    }

    /// The chunks to send now, given to `send` until it refuses one.
    pub fn send(&mut self, now: Instant, mut send: impl FnMut(&PacketChunk) -> bool) {
        for j in &mut self.jobs {
            let total = j.answer.data.len() as u64;
            let wait = STALL * (1 << j.stalls.min(5));
            if j.next > j.have && now.duration_since(j.moved) >= wait {
                self.counters.resent += 1;
                j.next = j.have;
                j.moved = now;
                j.stalls += 1;
            }
            while j.next < total.max(1) && j.next < j.have + WINDOW * CHUNK_BYTES as u64 {
                let from = j.next as usize;
                let to = (from + CHUNK_BYTES).min(total as usize);
                let chunk = PacketChunk {
                    id: j.id,
                    offset: j.next,
                    total,
                    packets: j.answer.packets,
                    left_out: j.answer.left_out,
                    data: j.answer.data[from..to].to_vec(),
                };
                if !send(&chunk) {
                    return;
                }
                self.counters.chunks += 1;
                // An empty answer is one empty chunk.
                j.next = (to as u64).max(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: u64, have: u64) -> PacketRequest {
        PacketRequest {
            id,
            have,
            ..PacketRequest::default()
        }
    }

    #[test]
    fn chunks_go_out_in_a_window_and_again_after_a_stall() {
        let mut a = Answers::default();
        let t0 = Instant::now();
        a.take(&[req(7, 0)], t0);
        assert_eq!(a.new_requests().len(), 1);
        let data = vec![5u8; 100 * CHUNK_BYTES];
        a.start(
            7,
            Answer {
                data,
                packets: 3,
                left_out: 0,
            },
            t0,
        );
        // Asked again while it is being answered: still one answer.
        a.take(&[req(7, 0)], t0);
        assert!(a.new_requests().is_empty());
        let mut sent = vec![];
        a.send(t0, |c| {
            sent.push(c.offset);
            true
        });
        assert_eq!(sent.len() as u64, WINDOW);
        // Nothing new until the collector moves, or the stall timer.
        a.send(t0, |_| panic!("window full"));
        a.take(&[req(7, 10 * CHUNK_BYTES as u64)], t0);
        let mut more = vec![];
        a.send(t0, |c| {
            more.push(c.offset);
            true
        });
        assert_eq!(more.len(), 10);
        let later = t0 + STALL;
        let mut again = vec![];
        a.send(later, |c| {
            again.push(c.offset);
            true
        });
        assert_eq!(again[0], 10 * CHUNK_BYTES as u64);
        // Whole: done, and not answered again.
        a.take(&[req(7, 100 * CHUNK_BYTES as u64)], later);
        assert!(!a.busy());
        a.take(&[req(7, 0)], later);
        assert!(a.new_requests().is_empty());
        assert_eq!(a.counters.answered, 1);
    }
}
