//! Records of other kinds than flows, attached to a batch's header (see
//! `BatchHeader::attachments`): `{ varint kind | varint len | body }*`.
//! A reader skips kinds it does not know, as version-1 readers skip the
//! whole attachment area.

use serde::{Deserialize, Serialize};

use crate::codec::{put_part, put_varint, take_part, take_varint, WireAddr};
use crate::file::{file_flags, FileDirection, FileHashes, FileRecord};
use crate::{Text, WireError};

/// Attachment kinds.
const KIND_FILE: u32 = 1;

/// A file record as serialized; times relative to the batch's base time.
#[derive(Serialize, Deserialize)]
struct WireFile<'a> {
    ts_rel_ms: i64,
    flow_start_rel_ms: i64,
    src_addr: WireAddr,
    src_port: u16,
    dst_addr: WireAddr,
    dst_port: u16,
    direction: u8,
    method: &'a str,
    url: &'a str,
    status: u16,
    size: u64,
    missing: u64,
    hashes: Option<([u8; 32], [u8; 20], [u8; 16])>,
    mime: &'a str,
    flags: u8,
}

fn rel(ms: u64, base_ms: u64) -> i64 {
    (ms as i64).wrapping_sub(base_ms as i64)
}

fn abs(rel: i64, base_ms: u64, what: &'static str) -> Result<u64, WireError> {
    (base_ms as i64)
        .checked_add(rel)
        .filter(|v| *v >= 0)
        .map(|v| v as u64)
        .ok_or(WireError::Malformed(what))
}

/// A file record framed as an attachment, in `scratch`.
pub(crate) fn encode_file<'b>(
    f: &FileRecord,
    base_ms: u64,
    scratch: &'b mut [u8],
) -> Result<&'b [u8], WireError> {
    let wire = WireFile {
        ts_rel_ms: rel(f.ts_ms, base_ms),
        flow_start_rel_ms: rel(f.flow_start_ms, base_ms),
        src_addr: f.src_addr.into(),
        src_port: f.src_port,
        dst_addr: f.dst_addr.into(),
        dst_port: f.dst_port,
        direction: f.direction as u8,
        method: f.method.as_str(),
        url: f.url.as_str(),
        status: f.status,
        size: f.size,
        missing: f.missing,
        hashes: f.hashes.map(|h| (h.sha256, h.sha1, h.md5)),
        mime: f.mime.as_str(),
        flags: f.flags,
    };
    let mut body = [0u8; 640];
    let n = postcard::to_slice(&wire, &mut body)
        .map_err(|_| WireError::Malformed("file record"))?
        .len();
    let mut pos = 0;
    put_varint(scratch, &mut pos, KIND_FILE)?;
    put_part(scratch, &mut pos, &body[..n])?;
    Ok(&scratch[..pos])
}

fn decode_file(body: &[u8], base_ms: u64) -> Result<FileRecord, WireError> {
    let (w, _): (WireFile<'_>, _) =
        postcard::take_from_bytes(body).map_err(|_| WireError::Malformed("file record"))?;
    if w.flags & !file_flags::ALL != 0 {
        return Err(WireError::Malformed("file flags"));
    }
    Ok(FileRecord {
        ts_ms: abs(w.ts_rel_ms, base_ms, "file time")?,
        flow_start_ms: abs(w.flow_start_rel_ms, base_ms, "file flow start")?,
        src_addr: w.src_addr.into(),
        src_port: w.src_port,
        dst_addr: w.dst_addr.into(),
        dst_port: w.dst_port,
        direction: FileDirection::from_u8(w.direction)
            .ok_or(WireError::Malformed("file direction"))?,
        method: Text::from_bytes(w.method.as_bytes()),
        url: Text::from_bytes(w.url.as_bytes()),
        status: w.status,
        size: w.size,
        missing: w.missing,
        hashes: w
            .hashes
            .map(|(sha256, sha1, md5)| FileHashes { sha256, sha1, md5 }),
        mime: Text::from_bytes(w.mime.as_bytes()),
        flags: w.flags,
    })
}

/// The file records of a batch, decoded as the iterator is walked. A
/// broken attachment ends the walk (what follows cannot be framed).
pub struct Files<'a> {
    bytes: &'a [u8],
    pos: usize,
    base_ms: u64,
}

impl<'a> Files<'a> {
    pub(crate) fn new(bytes: &'a [u8], base_ms: u64) -> Self {
        Files {
            bytes,
            pos: 0,
            base_ms,
        }
    }
}

impl Iterator for Files<'_> {
    type Item = Result<FileRecord, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.pos < self.bytes.len() {
            let framed = take_varint(self.bytes, &mut self.pos)
                .and_then(|kind| Ok((kind, take_part(self.bytes, &mut self.pos)?)));
            let result = match framed {
                Ok((KIND_FILE, body)) => decode_file(body, self.base_ms),
                Ok(_) => continue,
                Err(e) => Err(e),
            };
            if result.is_err() {
                self.pos = self.bytes.len();
            }
            return Some(result);
        }
        None
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::{BatchHeader, BatchReader, BatchWriter, FlowRecord};

    fn file(i: u8) -> FileRecord {
        FileRecord {
            ts_ms: 1_700_000_000_500 + u64::from(i),
            flow_start_ms: 1_700_000_000_000,
            src_addr: "10.0.0.2".parse().unwrap(),
            src_port: 40000 + u16::from(i),
            dst_addr: "2001:db8::1".parse().unwrap(),
            dst_port: 80,
            method: Text::from_bytes(b"GET"),
            url: Text::from_bytes(b"http://example.net/a.png"),
            status: 200,
            size: 4242,
            hashes: Some(FileHashes {
                sha256: [i; 32],
                sha1: [1; 20],
                md5: [2; 16],
            }),
            mime: Text::from_bytes(b"image/png"),
            flags: file_flags::INCOMPLETE,
            ..FileRecord::default()
        }
    }

    #[test]
    fn files_ride_in_the_header_and_flows_stay_readable() {
        let mut w = BatchWriter::default();
        w.start(&BatchHeader {
            tap_id: "t",
            base_ms: 1_700_000_000_000,
            ..BatchHeader::default()
        })
        .unwrap();
        let flow = FlowRecord {
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_000_000_900,
            ..FlowRecord::default()
        };
        w.push(&flow).unwrap();
        // Enough files to grow the header's length prefix past one byte.
        for i in 0..3 {
            w.push_file(&file(i)).unwrap();
        }
        w.push(&flow).unwrap();
        let r = BatchReader::new(w.as_bytes()).unwrap();
        let files: Vec<_> = r.files().map(|f| f.unwrap()).collect();
        assert_eq!(files, (0..3).map(file).collect::<Vec<_>>());
        let flows: Vec<_> = r.map(|f| f.unwrap().start_ms).collect();
        assert_eq!(flows, vec![flow.start_ms; 2]);
    }

    #[test]
    fn unknown_kinds_are_skipped_and_garbage_refused() {
        let mut bytes = std::vec::Vec::new();
        let mut scratch = [0u8; 64];
        let mut pos = 0;
        put_varint(&mut scratch, &mut pos, 99).unwrap();
        put_part(&mut scratch, &mut pos, b"later").unwrap();
        bytes.extend_from_slice(&scratch[..pos]);
        let mut s2 = [0u8; 1024];
        bytes.extend_from_slice(encode_file(&file(7), 5, &mut s2).unwrap());
        let got: Vec<_> = Files::new(&bytes, 5).collect();
        assert_eq!(got, vec![Ok(file(7))]);
        let cut = &bytes[..bytes.len() - 3];
        assert!(Files::new(cut, 5).any(|f| f.is_err()));
    }
}

/// What a collector of version 1 (before attachments) does with a batch,
/// kept here as it was written then: the header's known fields, the rest
/// of the header part skipped, every record decoded.
#[cfg(all(test, feature = "std"))]
mod v1_reader {
    use super::tests_support::*;
    use crate::codec::take_part;

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct HeaderV1<'a> {
        tap_id: &'a str,
        boot_id: u64,
        seq: u64,
        base_ms: u64,
        flags: u8,
    }

    #[derive(serde::Deserialize, Default)]
    #[allow(dead_code)]
    struct HeaderExt {
        dropped_batches: u64,
        low_seq: u64,
    }

    #[test]
    fn a_version_1_reader_skips_files_and_reads_every_flow() {
        // A tap that talks to version 1 collectors writes version 1.
        let (bytes, flows) = batch_with_files();
        assert_eq!(bytes[4], crate::codec::VERSION_1);
        let mut pos = 5;
        let header = take_part(&bytes, &mut pos).unwrap();
        let (v1, rest): (HeaderV1<'_>, &[u8]) = postcard::take_from_bytes(header).unwrap();
        let (ext, _ignored): (HeaderExt, &[u8]) = postcard::take_from_bytes(rest).unwrap();
        assert_eq!((v1.seq, ext.low_seq), (7, 3));
        let mut n = 0;
        while pos < bytes.len() {
            let body = take_part(&bytes, &mut pos).unwrap();
            let (core, _ext): (WireFlowV1, &[u8]) = postcard::take_from_bytes(body).unwrap();
            assert_eq!(core.src_port, flows[n].src.port);
            n += 1;
        }
        assert_eq!(n, flows.len());
    }

    /// The frozen core of a version-1 record, up to the fields checked.
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct WireFlowV1 {
        start_rel_ms: i64,
        duration_ms: u64,
        proto: u8,
        src_addr: crate::codec::WireAddr,
        src_port: u16,
    }
}

#[cfg(all(test, feature = "std"))]
mod tests_support {
    use super::*;
    use crate::{BatchHeader, BatchWriter, Endpoint, FlowRecord};

    /// A version 1 batch of three flows with two file records attached
    /// between them.
    pub fn batch_with_files() -> (std::vec::Vec<u8>, std::vec::Vec<FlowRecord>) {
        let mut w = BatchWriter::with_version(crate::codec::VERSION_1);
        w.start(&BatchHeader {
            tap_id: "old",
            seq: 7,
            low_seq: 3,
            base_ms: 1_000,
            ..BatchHeader::default()
        })
        .unwrap();
        let flows: std::vec::Vec<FlowRecord> = (0..3)
            .map(|i| FlowRecord {
                start_ms: 1_000 + i,
                end_ms: 2_000,
                proto: 6,
                src: Endpoint {
                    port: 40_000 + i as u16,
                    ..Endpoint::default()
                },
                ..FlowRecord::default()
            })
            .collect();
        w.push(&flows[0]).unwrap();
        let file = FileRecord {
            ts_ms: 1_500,
            flow_start_ms: 1_000,
            url: Text::from_bytes(b"http://x/y"),
            ..FileRecord::default()
        };
        w.push_file(&file).unwrap();
        w.push(&flows[1]).unwrap();
        w.push_file(&file).unwrap();
        w.push(&flows[2]).unwrap();
        (w.as_bytes().to_vec(), flows)
    }
}
