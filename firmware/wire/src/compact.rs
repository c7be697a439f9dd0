//! Wire version 2's record core: each record encoded against what its
//! batch already carried.
//!
//! A tap sees the same few MACs, addresses, server ports and histories over
//! and over, so each of them is a reference into a small per-batch table
//! (one byte) once the batch has carried it, and a literal (appended to the
//! table) the first time. Times are deltas from the previous record's end
//! (records leave in end order); the byte counts are carried as the IP bytes
//! plus what the link layer and the headers add beyond their minimum (zero
//! or a few for most flows). Tables live for one batch only: every datagram
//! decodes alone, whatever was lost or reordered before it.
//!
//! ```text
//! record = shape u8 | proto u8 | state u8 | end delta | duration
//!          | src addr | dst addr | src port | dst port | src mac | dst mac
//!            (each a table reference, or 0 and the literal: a port in 2
//!            bytes, a MAC in 6, an address 0 and 4 bytes or 1 and 16)
//!          | [src counters] | [dst counters] | history
//!          | [vlan] | [inner vlan] | [icmp type, code]
//! counters = packets | ip bytes | zigzag(frame - ip - 14 * packets)
//!            | zigzag(ip - payload - min headers * packets) | tcp flags
//! ```
//! All integers are LEB128 varints; deltas are zigzag. Extensions (names,
//! drops, missed bytes) follow as in version 1.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::codec::WireError;
use crate::record::{
    proto, ConnState, EndReason, Endpoint, FlowRecord, History, SideCounters, TapPort,
};

// The state byte: conn_state in the low 4 bits, end_reason in the next 3,
// and the top bit set when a flow other than TCP carries TCP flags.
const _: () = assert!(ConnState::ALL.len() <= 16 && EndReason::ALL.len() <= 8);
const STATE_FLAGS_ANYWAY: u8 = 0x80;

const ADDRS: usize = 64;
const MACS: usize = 32;
const PORTS: usize = 32;
const HISTORIES: usize = 16;

const SHAPE_VLAN: u8 = 0x01;
const SHAPE_INNER_VLAN: u8 = 0x02;
const SHAPE_CONTINUATION: u8 = 0x04;
const SHAPE_ICMP: u8 = 0x08;
const SHAPE_INGRESS_SHIFT: u8 = 4;
const SHAPE_SRC_SILENT: u8 = 0x40;
const SHAPE_DST_SILENT: u8 = 0x80;

/// What one batch has carried so far. Append-only, so undoing a record that
/// did not fit is restoring the counts ([`Mark`]).
#[derive(Clone)]
pub(crate) struct Tables {
    addrs: [IpAddr; ADDRS],
    macs: [[u8; 6]; MACS],
    ports: [u16; PORTS],
    histories: [History; HISTORIES],
    /// The encoder's way into each table: a value's fingerprint picks an
    /// entry holding its position + 1 (0: none), checked against the table,
    /// so a stale or colliding entry only costs a literal. A linear scan of
    /// the tables was most of the tap's cost per record.
    index: Index,
    mark: Mark,
}

/// Direct-mapped indexes, four entries per table entry.
#[derive(Clone)]
struct Index {
    addrs: [u8; ADDRS * 4],
    macs: [u8; MACS * 4],
    ports: [u8; PORTS * 4],
    histories: [u8; HISTORIES * 4],
}

/// What picks a value's index entry.
trait Fingerprint {
    fn fingerprint(&self) -> u64;
}

impl Fingerprint for IpAddr {
    fn fingerprint(&self) -> u64 {
        match self {
            IpAddr::V4(a) => u64::from(a.to_bits()),
            IpAddr::V6(a) => {
                let b = a.to_bits();
                (b as u64) ^ ((b >> 64) as u64).rotate_left(17) ^ 1
            }
        }
    }
}

impl Fingerprint for [u8; 6] {
    fn fingerprint(&self) -> u64 {
        let mut b = [0u8; 8];
        b[..6].copy_from_slice(self);
        u64::from_le_bytes(b)
    }
}

impl Fingerprint for u16 {
    fn fingerprint(&self) -> u64 {
        u64::from(*self)
    }
}

impl Fingerprint for History {
    fn fingerprint(&self) -> u64 {
        let mut b = [0u8; 8];
        let h = self.as_bytes();
        let n = h.len().min(8);
        b[..n].copy_from_slice(&h[..n]);
        u64::from_le_bytes(b) ^ (h.len() as u64) << 59
    }
}

/// The tables' fill and the previous record's end.
#[derive(Clone, Copy, Default)]
pub(crate) struct Mark {
    addrs: u8,
    macs: u8,
    ports: u8,
    histories: u8,
    prev_end_ms: u64,
}

impl Tables {
    pub fn new(base_ms: u64) -> Tables {
        Tables {
            addrs: [IpAddr::V4(Ipv4Addr::UNSPECIFIED); ADDRS],
            macs: [[0; 6]; MACS],
            ports: [0; PORTS],
            histories: [History::default(); HISTORIES],
            index: Index {
                addrs: [0; ADDRS * 4],
                macs: [0; MACS * 4],
                ports: [0; PORTS * 4],
                histories: [0; HISTORIES * 4],
            },
            mark: Mark {
                prev_end_ms: base_ms,
                ..Mark::default()
            },
        }
    }

    /// Empties the tables for a batch based at `base_ms`.
    pub fn reset(&mut self, base_ms: u64) {
        self.mark = Mark {
            prev_end_ms: base_ms,
            ..Mark::default()
        };
    }

    pub fn mark(&self) -> Mark {
        self.mark
    }

    pub fn restore(&mut self, mark: Mark) {
        self.mark = mark;
    }
}

/// A bounded writer.
struct Out<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Out<'_> {
    fn u8(&mut self, b: u8) -> Result<(), WireError> {
        *self.buf.get_mut(self.pos).ok_or(WireError::Full)? = b;
        self.pos += 1;
        Ok(())
    }

    fn var(&mut self, mut v: u64) -> Result<(), WireError> {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                return self.u8(byte);
            }
            self.u8(byte | 0x80)?;
        }
    }

    fn zigzag(&mut self, v: u64) -> Result<(), WireError> {
        let v = v as i64;
        self.var(((v << 1) ^ (v >> 63)) as u64)
    }

    fn bytes(&mut self, b: &[u8]) -> Result<(), WireError> {
        let end = self.pos + b.len();
        self.buf
            .get_mut(self.pos..end)
            .ok_or(WireError::Full)?
            .copy_from_slice(b);
        self.pos = end;
        Ok(())
    }
}

/// A reader over one record.
pub(crate) struct In<'a> {
    bytes: &'a [u8],
    pub pos: usize,
}

impl In<'_> {
    fn u8(&mut self) -> Result<u8, WireError> {
        let b = *self.bytes.get(self.pos).ok_or(WireError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn var(&mut self) -> Result<u64, WireError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return Err(WireError::Malformed("varint"));
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(WireError::Malformed("varint"))
    }

    fn zigzag(&mut self) -> Result<u64, WireError> {
        let v = self.var()?;
        Ok(((v >> 1) as i64 ^ -((v & 1) as i64)) as u64)
    }

    fn small(&mut self, what: &'static str) -> Result<u16, WireError> {
        u16::try_from(self.var()?).map_err(|_| WireError::Malformed(what))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let end = self.pos + N;
        let s = self.bytes.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn slice(&mut self, n: usize) -> Result<&[u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        let s = self.bytes.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
}

/// Finds `v` among the first `n` of `table` through `index`, or appends it
/// if there is room. `Ok(position)` if it was there. Stale entries (from a
/// batch before, or a record undone) fail the check against the table.
fn lookup<T: PartialEq + Copy + Fingerprint, const I: usize>(
    table: &mut [T],
    index: &mut [u8; I],
    n: &mut u8,
    v: T,
) -> Result<usize, ()> {
    const { assert!(I.is_power_of_two() && I <= 256 * 4) };
    let slot = (v.fingerprint().wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize & (I - 1);
    let used = usize::from(*n);
    let p = usize::from(index[slot]);
    if p != 0 && p <= used && table[p - 1] == v {
        return Ok(p - 1);
    }
    if used < table.len() {
        table[used] = v;
        *n += 1;
        index[slot] = *n;
    }
    Err(())
}

/// The table entry a reference names, or the literal appended.
fn resolve<T: Copy>(
    table: &mut [T],
    n: &mut u8,
    index: Option<usize>,
    literal: T,
) -> Result<T, WireError> {
    match index {
        Some(i) if i < usize::from(*n) => Ok(table[i]),
        Some(_) => Err(WireError::Malformed("table reference")),
        None => {
            let used = usize::from(*n);
            if used < table.len() {
                table[used] = literal;
                *n += 1;
            }
            Ok(literal)
        }
    }
}

/// The smallest IP and transport headers a packet of the flow has.
fn min_headers(proto_num: u8, v6: bool) -> u64 {
    let ip = if v6 { 40 } else { 20 };
    ip + match proto_num {
        proto::TCP => 20,
        proto::UDP | proto::ICMP | proto::ICMPV6 => 8,
        _ => 0,
    }
}

fn put_counters(
    out: &mut Out<'_>,
    c: &SideCounters,
    headers: u64,
    tcp: bool,
) -> Result<(), WireError> {
    out.var(c.packets)?;
    out.var(c.ip_bytes)?;
    out.zigzag(
        c.bytes
            .wrapping_sub(c.ip_bytes)
            .wrapping_sub(c.packets.wrapping_mul(14)),
    )?;
    out.zigzag(
        c.ip_bytes
            .wrapping_sub(c.payload_bytes)
            .wrapping_sub(c.packets.wrapping_mul(headers)),
    )?;
    if tcp {
        out.u8(c.tcp_flags)?;
    }
    Ok(())
}

fn take_counters(inp: &mut In<'_>, headers: u64, tcp: bool) -> Result<SideCounters, WireError> {
    let packets = inp.var()?;
    let ip_bytes = inp.var()?;
    let bytes = inp
        .zigzag()?
        .wrapping_add(ip_bytes)
        .wrapping_add(packets.wrapping_mul(14));
    let payload_bytes = ip_bytes
        .wrapping_sub(packets.wrapping_mul(headers))
        .wrapping_sub(inp.zigzag()?);
    let tcp_flags = if tcp { inp.u8()? } else { 0 };
    Ok(SideCounters {
        packets,
        bytes,
        ip_bytes,
        payload_bytes,
        tcp_flags,
    })
}

/// Encodes `r`'s core into `buf` against `t`; the bytes written. On an
/// error the caller restores `t` to its mark.
pub(crate) fn encode(r: &FlowRecord, t: &mut Tables, buf: &mut [u8]) -> Result<usize, WireError> {
    let mut out = Out { buf, pos: 0 };
    let silent = |c: &SideCounters| *c == SideCounters::default();
    let mut shape = (r.ingress as u8) << SHAPE_INGRESS_SHIFT;
    for (bit, on) in [
        (SHAPE_VLAN, r.vlan != 0),
        (SHAPE_INNER_VLAN, r.inner_vlan != 0),
        (SHAPE_CONTINUATION, r.continuation),
        (SHAPE_ICMP, r.icmp.is_some()),
        (SHAPE_SRC_SILENT, silent(&r.src.counters)),
        (SHAPE_DST_SILENT, silent(&r.dst.counters)),
    ] {
        if on {
            shape |= bit;
        }
    }
    out.u8(shape)?;
    out.u8(r.proto)?;
    let tcp =
        r.proto == proto::TCP || r.src.counters.tcp_flags != 0 || r.dst.counters.tcp_flags != 0;
    let anyway = if tcp && r.proto != proto::TCP {
        STATE_FLAGS_ANYWAY
    } else {
        0
    };
    out.u8(r.conn_state as u8 | (r.end_reason as u8) << 4 | anyway)?;
    out.zigzag(r.end_ms.wrapping_sub(t.mark.prev_end_ms))?;
    out.var(r.end_ms.wrapping_sub(r.start_ms))?;
    t.mark.prev_end_ms = r.end_ms;
    for addr in [r.src.addr, r.dst.addr] {
        match lookup(&mut t.addrs, &mut t.index.addrs, &mut t.mark.addrs, addr) {
            Ok(i) => out.var(i as u64 + 2)?,
            Err(()) => match addr {
                IpAddr::V4(a) => {
                    out.u8(0)?;
                    out.bytes(&a.octets())?;
                }
                IpAddr::V6(a) => {
                    out.u8(1)?;
                    out.bytes(&a.octets())?;
                }
            },
        }
    }
    for port in [r.src.port, r.dst.port] {
        match lookup(&mut t.ports, &mut t.index.ports, &mut t.mark.ports, port) {
            Ok(i) => out.var(i as u64 + 1)?,
            Err(()) => {
                // Ephemeral ports take 3 bytes as varints, 2 as they are.
                out.u8(0)?;
                out.bytes(&port.to_be_bytes())?;
            }
        }
    }
    for mac in [r.src.mac, r.dst.mac] {
        match lookup(&mut t.macs, &mut t.index.macs, &mut t.mark.macs, mac) {
            Ok(i) => out.var(i as u64 + 1)?,
            Err(()) => {
                out.u8(0)?;
                out.bytes(&mac)?;
            }
        }
    }
    for (side, addr) in [(&r.src, r.src.addr), (&r.dst, r.dst.addr)] {
        if !silent(&side.counters) {
            put_counters(
                &mut out,
                &side.counters,
                min_headers(r.proto, addr.is_ipv6()),
                tcp,
            )?;
        }
    }
    match lookup(
        &mut t.histories,
        &mut t.index.histories,
        &mut t.mark.histories,
        r.history,
    ) {
        Ok(i) => out.var(i as u64 + 1)?,
        Err(()) => {
            let h = r.history.as_bytes();
            out.u8(0)?;
            out.var(h.len() as u64)?;
            out.bytes(h)?;
        }
    }
    if r.vlan != 0 {
        out.var(r.vlan.into())?;
    }
    if r.inner_vlan != 0 {
        out.var(r.inner_vlan.into())?;
    }
    if let Some((ty, code)) = r.icmp {
        out.u8(ty)?;
        out.u8(code)?;
    }
    Ok(out.pos)
}

/// Decodes a record core from the head of `body` against `t`; the record
/// (without what extensions add) and where the extensions start.
pub(crate) fn decode(body: &[u8], t: &mut Tables) -> Result<(FlowRecord, usize), WireError> {
    let mut inp = In {
        bytes: body,
        pos: 0,
    };
    let shape = inp.u8()?;
    let proto_num = inp.u8()?;
    let state = inp.u8()?;
    let end_ms = t.mark.prev_end_ms.wrapping_add(inp.zigzag()?);
    let start_ms = end_ms.wrapping_sub(inp.var()?);
    t.mark.prev_end_ms = end_ms;
    let mut addrs = [IpAddr::V4(Ipv4Addr::UNSPECIFIED); 2];
    for a in &mut addrs {
        let r = inp.var()?;
        let literal = match r {
            0 => IpAddr::V4(Ipv4Addr::from(inp.array::<4>()?)),
            1 => IpAddr::V6(Ipv6Addr::from(inp.array::<16>()?)),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let index = (r >= 2).then(|| (r - 2) as usize);
        *a = resolve(&mut t.addrs, &mut t.mark.addrs, index, literal)?;
    }
    let mut ports = [0u16; 2];
    for p in &mut ports {
        let r = inp.var()?;
        let literal = if r == 0 {
            u16::from_be_bytes(inp.array::<2>()?)
        } else {
            0
        };
        let index = (r >= 1).then(|| (r - 1) as usize);
        *p = resolve(&mut t.ports, &mut t.mark.ports, index, literal)?;
    }
    let mut macs = [[0u8; 6]; 2];
    for m in &mut macs {
        let r = inp.var()?;
        let literal = if r == 0 { inp.array::<6>()? } else { [0; 6] };
        let index = (r >= 1).then(|| (r - 1) as usize);
        *m = resolve(&mut t.macs, &mut t.mark.macs, index, literal)?;
    }
    let tcp = proto_num == proto::TCP || state & STATE_FLAGS_ANYWAY != 0;
    let mut counters = [SideCounters::default(); 2];
    for (i, (c, bit)) in counters
        .iter_mut()
        .zip([SHAPE_SRC_SILENT, SHAPE_DST_SILENT])
        .enumerate()
    {
        if shape & bit == 0 {
            *c = take_counters(&mut inp, min_headers(proto_num, addrs[i].is_ipv6()), tcp)?;
        }
    }
    let r = inp.var()?;
    let history = if r == 0 {
        let len = usize::try_from(inp.var()?).map_err(|_| WireError::Malformed("history"))?;
        if len > History::CAPACITY {
            return Err(WireError::Malformed("history"));
        }
        let text =
            core::str::from_utf8(inp.slice(len)?).map_err(|_| WireError::Malformed("history"))?;
        History::from_text(text)
    } else {
        History::default()
    };
    let index = (r >= 1).then(|| (r - 1) as usize);
    let history = resolve(&mut t.histories, &mut t.mark.histories, index, history)?;
    let vlan = if shape & SHAPE_VLAN != 0 {
        inp.small("vlan")?
    } else {
        0
    };
    let inner_vlan = if shape & SHAPE_INNER_VLAN != 0 {
        inp.small("inner vlan")?
    } else {
        0
    };
    let icmp = if shape & SHAPE_ICMP != 0 {
        Some((inp.u8()?, inp.u8()?))
    } else {
        None
    };
    let endpoint = |i: usize| Endpoint {
        addr: addrs[i],
        port: ports[i],
        mac: macs[i],
        counters: counters[i],
    };
    let record = FlowRecord {
        start_ms,
        end_ms,
        proto: proto_num,
        src: endpoint(0),
        dst: endpoint(1),
        vlan,
        inner_vlan,
        conn_state: ConnState::from_u8(state & 0x0f).ok_or(WireError::Malformed("conn_state"))?,
        history,
        end_reason: EndReason::from_u8((state >> 4) & 0x07)
            .ok_or(WireError::Malformed("end_reason"))?,
        continuation: shape & SHAPE_CONTINUATION != 0,
        ingress: TapPort::from_u8((shape >> SHAPE_INGRESS_SHIFT) & 0x03)
            .ok_or(WireError::Malformed("ingress"))?,
        icmp,
        ..FlowRecord::default()
    };
    Ok((record, inp.pos))
}
