//! HTTP downloads as frames: handshake, a GET, the response in segments, a
//! FIN each way. For the file tracker's and the packet ring's benchmarks
//! and budget test.

use etherparse::PacketBuilder;

/// Bytes of TCP payload per segment.
pub const SEGMENT: usize = 1_400;

/// A body of `len` bytes no codec shrinks much.
pub fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// The frames of download `n` (client 10.1.x.y, server 10.2.0.1:80).
pub fn download(n: u32, body: &[u8]) -> Vec<Vec<u8>> {
    let client = [10, 1, (n >> 8) as u8, n as u8];
    let server = [10, 2, 0, 1];
    let sport = 20_000 + (n % 40_000) as u16;
    let pkt = |to_server: bool, seq: u32, ack: u32, flags: &str, payload: &[u8]| {
        let (s, d, sp, dp) = if to_server {
            (client, server, sport, 80)
        } else {
            (server, client, 80, sport)
        };
        let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, s[3]], [2, 0, 0, 0, 0, d[3]])
            .ipv4(s, d, 64)
            .tcp(sp, dp, seq, 64_000);
        for f in flags.chars() {
            b = match f {
                'S' => b.syn(),
                'A' => b.ack(ack),
                'F' => b.fin(),
                _ => b,
            };
        }
        let mut out = Vec::with_capacity(payload.len() + 64);
        // Cannot fail: the builder sizes its own headers.
        let _ = b.write(&mut out, payload);
        out
    };
    let request = b"GET /f.bin HTTP/1.1\r\nHost: files.example\r\n\r\n";
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
    let mut response = head.into_bytes();
    response.extend_from_slice(body);
    let (c0, s0) = (1000u32, 5000u32);
    let mut out = vec![
        pkt(true, c0, 0, "S", &[]),
        pkt(false, s0, c0 + 1, "SA", &[]),
        pkt(true, c0 + 1, s0 + 1, "A", &[]),
        pkt(true, c0 + 1, s0 + 1, "A", request),
    ];
    let c1 = c0 + 1 + request.len() as u32;
    for (i, seg) in response.chunks(SEGMENT).enumerate() {
        out.push(pkt(false, s0 + 1 + (i * SEGMENT) as u32, c1, "A", seg));
    }
    let s1 = s0 + 1 + response.len() as u32;
    out.push(pkt(false, s1, c1, "FA", &[]));
    out.push(pkt(true, c1, s1 + 1, "FA", &[]));
    out.push(pkt(false, s1 + 1, c1 + 1, "A", &[]));
    out
}

/// `count` downloads, `open` at once interleaved packet by packet, each
/// frame with its time (5 µs apart) into `emit`.
pub fn downloads(count: u32, open: u32, body: &[u8], mut emit: impl FnMut(u64, &[u8])) {
    let mut ts = 1_700_000_000_000_000u64;
    for group in (0..count).step_by(open.max(1) as usize) {
        let conns: Vec<Vec<Vec<u8>>> = (group..(group + open).min(count))
            .map(|n| download(n, body))
            .collect();
        let longest = conns.iter().map(Vec::len).max().unwrap_or(0);
        for i in 0..longest {
            for c in &conns {
                if let Some(p) = c.get(i) {
                    ts += 5;
                    emit(ts, p);
                }
            }
        }
    }
}

/// Writes frames as a microsecond Ethernet pcap (snap length 65535); the
/// bench kit's one pcap writer.
pub fn write_pcap(
    path: &std::path::Path,
    frames: impl FnOnce(&mut dyn FnMut(u64, &[u8])),
) -> std::io::Result<u64> {
    write_pcap_cut(path, |emit| {
        frames(&mut |ts_us, frame| emit(ts_us, frame.len() as u32, frame))
    })
}

/// As [`write_pcap`], each frame given as (time µs, length on the wire,
/// the bytes captured): a capture cut at a snap length, as `tcpdump -s`
/// writes one, so large transfers cost a header per packet.
pub fn write_pcap_cut(
    path: &std::path::Path,
    frames: impl FnOnce(&mut dyn FnMut(u64, u32, &[u8])),
) -> std::io::Result<u64> {
    use std::io::Write;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    w.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    w.write_all(&2u16.to_le_bytes())?;
    w.write_all(&4u16.to_le_bytes())?;
    w.write_all(&[0; 8])?;
    w.write_all(&65_535u32.to_le_bytes())?;
    w.write_all(&1u32.to_le_bytes())?;
    let mut error = None;
    let mut n = 0u64;
    frames(&mut |ts_us, orig_len, frame| {
        if error.is_some() {
            return;
        }
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
        header[4..8].copy_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
        header[8..12].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        header[12..16].copy_from_slice(&orig_len.max(frame.len() as u32).to_le_bytes());
        if let Err(e) = w.write_all(&header).and_then(|()| w.write_all(frame)) {
            error = Some(e);
        }
        n += 1;
    });
    if let Some(e) = error {
        return Err(e);
    }
    w.flush()?;
    Ok(n)
}
