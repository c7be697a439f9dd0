//! Damaged and foreign capture files give a clear error, and the flows of
//! everything before the damage still come out.

mod common;

use std::path::Path;

use common::*;

fn stderr_of(file: &Path) -> (bool, String, String) {
    let out = pitapd(&["--read", file.to_str().unwrap(), "--print"]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn pcap_header(linktype: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&65_535u32.to_le_bytes());
    h.extend_from_slice(&linktype.to_le_bytes());
    h
}

fn expect_error(name: &str, bytes: &[u8], needle: &str) {
    let dir = temp_dir(name);
    let file = dir.join(name);
    std::fs::write(&file, bytes).unwrap();
    let (ok, _, err) = stderr_of(&file);
    assert!(!ok, "{name}: pitapd accepted it");
    assert!(err.contains(needle), "{name}: {err:?} lacks {needle:?}");
    assert!(!err.contains("panicked"), "{name}: {err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn foreign_and_empty_files() {
    expect_error("empty.pcap", b"", "empty");
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    expect_error("garbage.pcap", &garbage, "not a pcap or pcapng file");
    expect_error(
        "text.pcap",
        b"timestamp,src,dst\n",
        "not a pcap or pcapng file",
    );
    expect_error("short.pcap", &pcap_header(1)[..10], "truncated");
}

#[test]
fn wrong_link_types_are_named() {
    expect_error(
        "wifi.pcap",
        &pcap_header(105),
        "unsupported link type 105 (IEEE802_11 (Wi-Fi))",
    );
    expect_error(
        "usb.pcap",
        &pcap_header(220),
        "unsupported link type 220 (USB_LINUX_MMAPPED)",
    );
    expect_error(
        "odd.pcap",
        &pcap_header(4000),
        "unsupported link type 4000 (unknown)",
    );
}

#[test]
fn absurd_lengths_are_refused() {
    let mut f = pcap_header(1);
    f.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&0x7fff_ffffu32.to_le_bytes());
    f.extend_from_slice(&0x7fff_ffffu32.to_le_bytes());
    f.extend_from_slice(&[0; 64]);
    expect_error(
        "absurd.pcap",
        &f,
        "absurd captured length 2147483647 at byte 24",
    );
    // pcapng: a section header, then a block claiming 5 bytes.
    let mut ng = Vec::new();
    ng.extend_from_slice(&0x0a0d_0d0au32.to_le_bytes());
    ng.extend_from_slice(&28u32.to_le_bytes());
    ng.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    ng.extend_from_slice(&[1, 0, 0, 0]);
    ng.extend_from_slice(&(-1i64).to_le_bytes());
    ng.extend_from_slice(&28u32.to_le_bytes());
    let shb = ng.clone();
    ng.extend_from_slice(&1u32.to_le_bytes());
    ng.extend_from_slice(&5u32.to_le_bytes());
    expect_error("badblock.pcapng", &ng, "absurd block length 5");
    // A packet block before any interface description.
    let mut epb = shb.clone();
    epb.extend_from_slice(&6u32.to_le_bytes());
    epb.extend_from_slice(&32u32.to_le_bytes());
    epb.extend_from_slice(&[0; 20]);
    epb.extend_from_slice(&32u32.to_le_bytes());
    expect_error(
        "noiface.pcapng",
        &epb,
        "names interface 0, which was never described",
    );
    // An interface with a link type PiTap does not read.
    let mut idb = shb;
    idb.extend_from_slice(&1u32.to_le_bytes());
    idb.extend_from_slice(&20u32.to_le_bytes());
    idb.extend_from_slice(&127u16.to_le_bytes());
    idb.extend_from_slice(&[0; 6]);
    idb.extend_from_slice(&20u32.to_le_bytes());
    expect_error(
        "radiotap.pcapng",
        &idb,
        "unsupported link type 127 (IEEE802_11_RADIOTAP)",
    );
}

/// A capture cut in the middle of a packet: the complete packets before the
/// cut all reach their flows (as many as tshark reads), then the error.
#[test]
fn truncated_file_keeps_what_came_before() {
    let original = std::fs::read(real_pcap("zeek__http_bro.org.pcap")).unwrap();
    let dir = temp_dir("cut");
    let file = dir.join("cut.pcap");
    std::fs::write(&file, &original[..original.len() / 2 + 7]).unwrap();
    let (ok, stdout, err) = stderr_of(&file);
    assert!(!ok);
    assert!(err.contains("file truncated at byte"), "{err}");
    let tshark_frames = run("tshark", &["-r", file.to_str().unwrap()]).stdout;
    let tshark_frames = String::from_utf8_lossy(&tshark_frames).lines().count() as u64;
    assert!(tshark_frames > 100);
    let mut pkts = 0;
    for line in stdout.lines() {
        for field in line.split_whitespace() {
            if let Some(n) = field
                .strip_prefix("src_pkts=")
                .or_else(|| field.strip_prefix("dst_pkts="))
            {
                pkts += n.parse::<u64>().unwrap();
            }
        }
    }
    assert_eq!(pkts, tshark_frames);
    let _ = std::fs::remove_dir_all(dir);
}

/// The same packets in every container PiTap reads give the same flows:
/// pcap little- and big-endian, microsecond and nanosecond, and pcapng.
#[test]
fn every_format_gives_the_same_flows() {
    let dir = temp_dir("formats");
    for name in [
        "zeek__http_bro.org.pcap",
        "zeek__mixed-vlan-mpls.pcap",
        "zeek__linux_dlt_sll2.pcap",
    ] {
        let src = real_pcap(name);
        let reference = flows_json(&src, &[]);
        assert!(!reference.is_empty());
        let s = src.to_str().unwrap();
        let ng = dir.join("x.pcapng");
        let ns = dir.join("x-ns.pcap");
        let be = dir.join("x-be.pcap");
        let out = run("editcap", &["-F", "pcapng", s, ng.to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
        let out = run("editcap", &["-F", "nsecpcap", s, ns.to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
        std::fs::write(&be, big_endian_copy(&std::fs::read(&src).unwrap())).unwrap();
        for variant in [&ng, &ns, &be] {
            assert_eq!(
                flows_json(variant, &[]),
                reference,
                "{name} as {}",
                variant.display()
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Rewrites a little-endian microsecond pcap in big-endian byte order.
fn big_endian_copy(le: &[u8]) -> Vec<u8> {
    assert_eq!(&le[..4], &0xa1b2_c3d4u32.to_le_bytes());
    let mut out = Vec::with_capacity(le.len());
    let swap32 = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap()).to_be_bytes();
    let swap16 = |b: &[u8]| u16::from_le_bytes(b.try_into().unwrap()).to_be_bytes();
    out.extend_from_slice(&swap32(&le[0..4]));
    out.extend_from_slice(&swap16(&le[4..6]));
    out.extend_from_slice(&swap16(&le[6..8]));
    for i in (8..24).step_by(4) {
        out.extend_from_slice(&swap32(&le[i..i + 4]));
    }
    let mut at = 24;
    while at + 16 <= le.len() {
        for i in (at..at + 16).step_by(4) {
            out.extend_from_slice(&swap32(&le[i..i + 4]));
        }
        let incl = u32::from_le_bytes(le[at + 8..at + 12].try_into().unwrap()) as usize;
        out.extend_from_slice(&le[at + 16..at + 16 + incl]);
        at += 16 + incl;
    }
    out
}
