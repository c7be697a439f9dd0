//! Counters the engine keeps: what it saw, what it could not decode and why,
//! and which non-IP protocols went by.

pitap_wire::named_enum! {
    /// Something wrong with a frame. Frames with the first kinds are dropped
    /// (no flow can be told from them); the `*Kept` kinds are counted but the
    /// frame still goes into its flow, so no bytes are lost.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Anomaly {
        /// Shorter than its link-layer header.
        TruncatedLink = 0 => "truncated_link",
        /// Ends inside a VLAN tag.
        TruncatedVlan = 1 => "truncated_vlan",
        /// Ends inside an MPLS label stack.
        TruncatedMpls = 2 => "truncated_mpls",
        /// MPLS payload that is not IP (pseudowire, control word).
        MplsNotIp = 3 => "mpls_not_ip",
        /// More VLAN tags or MPLS labels than any sane network stacks.
        TooManyTags = 4 => "too_many_tags",
        /// Ends inside the IP header.
        TruncatedIp = 5 => "truncated_ip",
        /// IP version nibble does not match the ethertype.
        BadIpVersion = 6 => "bad_ip_version",
        /// IP header fields contradict each other (e.g. header length < 20).
        BadIpHeader = 7 => "bad_ip_header",
        /// Transport header cut short; the fields present were used.
        TruncatedL4Kept = 8 => "truncated_l4",
        /// A later IP fragment whose first fragment was not seen; accounted to
        /// a flow without ports.
        FragmentWithoutFirstKept = 9 => "fragment_without_first",
    }
}

impl Anomaly {
    pub const COUNT: usize = Anomaly::ALL.len();

    /// Whether frames with this anomaly still count in a flow.
    pub fn is_kept(self) -> bool {
        matches!(
            self,
            Anomaly::TruncatedL4Kept | Anomaly::FragmentWithoutFirstKept
        )
    }
}

/// Frames per non-IP ethertype, in a fixed table: the first
/// `ETHERTYPE_SLOTS` distinct ethertypes get their own counter, the rest
/// share `other`.
#[derive(Clone, Debug, Default)]
pub struct EthertypeCounts {
    entries: [(u16, u64); Self::SLOTS],
    used: usize,
    pub other: u64,
}

impl EthertypeCounts {
    pub const SLOTS: usize = 16;

    pub fn count(&mut self, ethertype: u16) {
        if let Some(entry) = self.entries[..self.used]
            .iter_mut()
            .find(|(t, _)| *t == ethertype)
        {
            entry.1 += 1;
        } else if self.used < Self::SLOTS {
            self.entries[self.used] = (ethertype, 1);
            self.used += 1;
        } else {
            self.other += 1;
        }
    }

    /// (ethertype, frames) pairs in the order first seen.
    pub fn iter(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.entries[..self.used].iter().copied()
    }

    pub fn get(&self, ethertype: u16) -> u64 {
        self.iter()
            .find(|(t, _)| *t == ethertype)
            .map_or(0, |(_, n)| n)
    }
}

/// Everything the engine counts.
#[derive(Clone, Debug, Default)]
pub struct EngineStats {
    /// Frames offered to the engine.
    pub frames: u64,
    /// Their wire bytes.
    pub bytes: u64,
    /// Frames that went into a flow.
    pub ip_frames: u64,
    /// Frames that carried no IP.
    pub non_ip: EthertypeCounts,
    /// Per `Anomaly` (index = discriminant).
    pub anomalies: [u64; Anomaly::COUNT],
    /// Flows created.
    pub flows_created: u64,
    /// Records emitted (a flow split by the active timeout emits several).
    pub records: u64,
    /// Flows ended because the table was full.
    pub evictions: u64,
    /// Of those, flows whose responder had never answered (a SYN flood's
    /// half-open connections go first, before established flows).
    pub evictions_embryonic: u64,
    /// Flows in the table now.
    pub active_flows: u64,
    /// Application payloads understood, and those that were malformed
    /// (counted and skipped).
    pub apps: AppStats,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppStats {
    pub dns_responses: u64,
    pub dns_malformed: u64,
    pub dhcp_messages: u64,
    pub dhcp_malformed: u64,
    pub tls_hellos: u64,
    pub tls_joined: u64,
    pub tls_malformed: u64,
    pub http_requests: u64,
    pub http_malformed: u64,
    /// Flows whose application info found the per-flow slab full.
    pub slab_full: u64,
}

impl EngineStats {
    pub fn anomaly(&self, a: Anomaly) -> u64 {
        self.anomalies[a as usize]
    }

    /// Frames dropped without going into any flow.
    pub fn dropped(&self) -> u64 {
        Anomaly::ALL
            .iter()
            .filter(|a| !a.is_kept())
            .map(|a| self.anomaly(*a))
            .sum()
    }
}
