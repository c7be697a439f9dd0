//! Writing frames to a pcap file, and a source wrapper that records every
//! frame it passes on (smoltcp's `PcapWriter`, for our `PacketSource`).

use std::io::{self, Write};

use pitap_flow_core::{Frame, LinkType, PacketSource};

/// Writes a microsecond pcap file, little-endian.
pub struct PcapWriter<W: Write> {
    out: W,
    link: LinkType,
}

impl<W: Write> PcapWriter<W> {
    pub fn new(mut out: W, link: LinkType) -> io::Result<Self> {
        let mut header = Vec::with_capacity(24);
        header.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        header.extend_from_slice(&2u16.to_le_bytes());
        header.extend_from_slice(&4u16.to_le_bytes());
        header.extend_from_slice(&0i32.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&262_144u32.to_le_bytes());
        header.extend_from_slice(&u32::from(link.linktype()).to_le_bytes());
        out.write_all(&header)?;
        Ok(PcapWriter { out, link })
    }

    /// Writes one frame; its link type must be the file's.
    pub fn write_frame(&mut self, frame: &Frame<'_>) -> io::Result<()> {
        if frame.link != self.link {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "frame link type differs from the file's",
            ));
        }
        self.write_packet(frame.ts_us, frame.data, frame.orig_len)
    }

    /// Writes one packet: time in microseconds, captured bytes, wire length.
    pub fn write_packet(&mut self, ts_us: u64, data: &[u8], orig_len: u32) -> io::Result<()> {
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
        header[4..8].copy_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
        header[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
        header[12..16].copy_from_slice(&orig_len.to_le_bytes());
        self.out.write_all(&header)?;
        self.out.write_all(data)
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Passes frames through from an inner source and writes each to a pcap.
pub struct PcapTee<S, W: Write> {
    inner: S,
    writer: PcapWriter<W>,
}

impl<S, W: Write> PcapTee<S, W> {
    pub fn new(inner: S, writer: PcapWriter<W>) -> Self {
        PcapTee { inner, writer }
    }
}

/// Errors of a wrapped source, or of the tee's own writing.
#[derive(Debug)]
pub enum TeeError<E> {
    Source(E),
    Write(io::Error),
}

impl<S: PacketSource, W: Write> PacketSource for PcapTee<S, W> {
    type Error = TeeError<S::Error>;

    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, Self::Error> {
        let frame = self.inner.next_frame().map_err(TeeError::Source)?;
        if let Some(f) = &frame {
            self.writer.write_frame(f).map_err(TeeError::Write)?;
        }
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::CaptureReader;

    #[test]
    fn tee_copies_every_frame_it_passes() {
        let mut original = PcapWriter::new(Vec::new(), LinkType::Ethernet).unwrap();
        for i in 0..5u8 {
            original
                .write_packet(1_000_000 + u64::from(i), &[i; 60], 60 + u32::from(i))
                .unwrap();
        }
        let reader = CaptureReader::new(original.into_inner()).unwrap();
        let copy = PcapWriter::new(Vec::new(), LinkType::Ethernet).unwrap();
        let mut tee = PcapTee::new(reader, copy);
        let mut seen = 0;
        while let Ok(Some(frame)) = tee.next_frame() {
            assert_eq!(frame.data[0], seen);
            seen += 1;
        }
        assert_eq!(seen, 5);
        let copied = CaptureReader::new(tee.writer.into_inner()).unwrap();
        let mut copied = copied;
        let mut n = 0u8;
        while let Some(frame) = copied.next_frame().unwrap() {
            assert_eq!(frame.orig_len, 60 + u32::from(n));
            assert_eq!(frame.ts_us, 1_000_000 + u64::from(n));
            n += 1;
        }
        assert_eq!(n, 5);
    }
}
