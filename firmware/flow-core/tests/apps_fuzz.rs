//! Fuzz targets for the application parsers (proptest): arbitrary bytes,
//! and valid messages mutated by flipped bytes, cuts and splices, must give
//! a value or an error — never a panic, never a name longer than DNS
//! allows, never a slice outside the input. `PROPTEST_CASES=1000000 cargo
//! test --release -p pitap-flow-core --test apps_fuzz` for a long run.

use pitap_flow_core::apps::{dhcp, dhcp6, dns, http, tls};
use proptest::prelude::*;

/// A DNS response with a compressed CNAME chain and A/AAAA answers.
fn dns_response() -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 3, 0, 0, 0, 0];
    m.extend_from_slice(b"\x03www\x07example\x03net\x00\x00\x01\x00\x01");
    // www.example.net CNAME c2.example.net (c2 + pointer to example.net)
    m.extend_from_slice(&[
        0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 5, 2, b'c', b'2', 0xc0, 16,
    ]);
    let c2 = m.len() - 5;
    m.extend_from_slice(&[0xc0, c2 as u8, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
    m.extend_from_slice(&[0xc0, c2 as u8, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
    m.extend_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
    m
}

fn client_hello() -> Vec<u8> {
    let mut ext = Vec::new();
    ext.extend_from_slice(&[0, 0, 0, 16, 0, 14, 0, 0, 11]);
    ext.extend_from_slice(b"example.net");
    ext.extend_from_slice(&[0, 16, 0, 5, 0, 3, 2, b'h', b'2']);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[1; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 1, 1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut out = vec![22, 3, 1];
    out.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    out.push(1);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&body);
    out
}

fn dhcp_request() -> Vec<u8> {
    let mut m = vec![1, 1, 6, 0];
    m.extend_from_slice(&[0; 8]);
    m.extend_from_slice(&[0; 16]);
    m.extend_from_slice(&[2, 0, 0, 0, 0, 9]);
    m.extend_from_slice(&[0; 10 + 192]);
    m.extend_from_slice(&[0x63, 0x82, 0x53, 0x63, 53, 1, 3, 12, 5]);
    m.extend_from_slice(b"alice");
    m.extend_from_slice(&[50, 4, 10, 1, 2, 34, 255]);
    m
}

fn dhcp6_reply() -> Vec<u8> {
    let mut m = vec![7, 1, 2, 3];
    m.extend_from_slice(&[0, 1, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 9]); // client id: DUID-LL
    m.extend_from_slice(&[0, 3, 0, 40, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]); // IA_NA
    m.extend_from_slice(&[0, 5, 0, 24]);
    m.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
    m.extend_from_slice(&[0; 8]);
    m.extend_from_slice(&[
        0, 39, 0, 12, 0, 5, b'a', b'l', b'i', b'c', b'e', 3, b'l', b'a', b'n', 0,
    ]);
    m
}

fn http_request() -> Vec<u8> {
    b"GET /x HTTP/1.1\r\nHost: example.net\r\nAccept: */*\r\n\r\n".to_vec()
}

fn exercise(data: &[u8]) {
    if let Ok(resp) = dns::parse_response(data) {
        assert!(resp.qname.as_bytes().len() <= dns::MAX_NAME);
        let _ = resp.records(|_, a| {
            if let dns::Answer::Cname { name, target, .. } = a {
                assert!(
                    name.as_bytes().len() <= dns::MAX_NAME
                        && target.as_bytes().len() <= dns::MAX_NAME
                );
            }
        });
    }
    if let Ok(tls::Outcome::Hello(h)) = tls::parse_client_hello(data) {
        for s in h.sni.into_iter().chain(h.alpn).chain(h.alpn_protocols()) {
            let start = s.as_ptr() as usize - data.as_ptr() as usize;
            assert!(start + s.len() <= data.len());
        }
    }
    let _ = http::parse_request(data);
    if let Ok(d) = dhcp6::parse(data) {
        if let Some(n) = d.fqdn {
            assert!(n.as_bytes().len() <= dns::MAX_NAME);
        }
    }
    if let Ok(d) = dhcp::parse(data) {
        if let Some(h) = d.hostname {
            assert!(h.len() <= 255);
        }
    }
}

fn mutate(seed: Vec<u8>, edits: Vec<(usize, u8)>, cut: usize, splice: Vec<u8>) -> Vec<u8> {
    let mut v = seed;
    for (at, b) in edits {
        if !v.is_empty() {
            let i = at % v.len();
            v[i] ^= b;
        }
    }
    v.truncate(cut % (v.len() + 1));
    v.extend_from_slice(&splice);
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(4096)
    ))]

    #[test]
    fn arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        exercise(&data);
    }

    #[test]
    fn mutated_messages(
        which in 0usize..5,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
        splice in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let seed = [dns_response(), client_hello(), dhcp_request(), http_request(), dhcp6_reply()][which].clone();
        exercise(&mutate(seed, edits, cut, splice));
    }
}

#[test]
fn the_seeds_parse() {
    let (dns_msg, hello, request) = (dns_response(), client_hello(), dhcp_request());
    let resp = dns::parse_response(&dns_msg).unwrap();
    assert_eq!(resp.qname.as_str(), "www.example.net");
    let mut seen = Vec::new();
    resp.answers(|a| seen.push(a)).unwrap();
    assert!(
        matches!(&seen[0], dns::Answer::Cname { target, .. } if target.as_str() == "c2.example.net")
    );
    assert!(matches!(
        seen[1],
        dns::Answer::A {
            addr: [192, 0, 2, 7],
            ..
        }
    ));
    let Ok(tls::Outcome::Hello(h)) = tls::parse_client_hello(&hello) else {
        panic!()
    };
    assert_eq!(h.sni, Some(&b"example.net"[..]));
    let d = dhcp::parse(&request).unwrap();
    assert_eq!(
        (d.hostname, d.msg_type, d.requested),
        (Some(&b"alice"[..]), Some(3), Some([10, 1, 2, 34]))
    );
    assert!(http::parse_request(&http_request()).unwrap().is_some());
    let d6 = dhcp6::parse(&dhcp6_reply()).unwrap();
    assert_eq!(d6.mac, Some([2, 0, 0, 0, 0, 9]));
    assert_eq!(d6.addr.map(|a| a[15]), Some(7));
    assert_eq!(
        d6.fqdn.map(|n| n.as_str().to_string()).as_deref(),
        Some("alice.lan")
    );
}
