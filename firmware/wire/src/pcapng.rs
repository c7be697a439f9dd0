//! The few pcapng blocks (draft-ietf-opsawg-pcapng) a packet fetch is made
//! of: the collector's section header, naming what was fetched; the tap's
//! interface descriptions, one per tap port and link type; a packet block
//! per packet, times in microseconds. Little-endian, as written by the
//! machine that writes the section header. Hand-written: the pcapng crates
//! read captures; writing four block types is a page.

use std::vec::Vec;

/// Appends one block: type, length, body (padded to 4), length.
fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
    let padded = body.len().div_ceil(4) * 4;
    let len = (12 + padded) as u32;
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(body);
    out.resize(out.len() + padded - body.len(), 0);
    out.extend_from_slice(&len.to_le_bytes());
}

/// Appends one option: code, length, value padded to 4.
fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + value.len().div_ceil(4) * 4 - value.len(), 0);
}

/// A section header block with a comment (`shb_comment`... opt_comment).
pub fn section_header(out: &mut Vec<u8>, comment: &str) {
    let mut body = Vec::new();
    body.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&(-1i64).to_le_bytes());
    option(&mut body, 1, comment.as_bytes());
    option(&mut body, 0, &[]);
    block(out, 0x0a0d_0d0a, &body);
}

/// An interface description block: link type, `if_name`, µs resolution.
pub fn interface(out: &mut Vec<u8>, linktype: u16, name: &str) {
    let mut body = Vec::with_capacity(40);
    body.extend_from_slice(&linktype.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&262_144u32.to_le_bytes());
    option(&mut body, 2, name.as_bytes());
    option(&mut body, 9, &[6]);
    option(&mut body, 0, &[]);
    block(out, 1, &body);
}

/// An enhanced packet block on interface `id`, time in µs since the epoch.
pub fn packet(out: &mut Vec<u8>, id: u32, ts_us: u64, orig_len: u32, data: &[u8]) {
    let mut body = Vec::with_capacity(20 + data.len());
    body.extend_from_slice(&id.to_le_bytes());
    body.extend_from_slice(&((ts_us >> 32) as u32).to_le_bytes());
    body.extend_from_slice(&(ts_us as u32).to_le_bytes());
    body.extend_from_slice(&(data.len() as u32).to_le_bytes());
    body.extend_from_slice(&orig_len.to_le_bytes());
    body.extend_from_slice(data);
    block(out, 6, &body);
}

/// Bytes a packet block of `len` captured bytes takes.
pub fn packet_size(len: usize) -> usize {
    32 + len.div_ceil(4) * 4
}
