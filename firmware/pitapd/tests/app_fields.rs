//! The application parsers against tshark on real captures: every DNS
//! response's question name and A/AAAA/CNAME answers, every TLS
//! ClientHello's server name and ALPN (joining a hello that spans two
//! segments, as the flow engine will), every HTTP request's method, target
//! and Host, every DHCP message's client MAC, your-address, type and
//! hostname, frame by frame, read with `tshark -T fields`.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use pitap_flow_core::apps::{dhcp, dhcp6, dns, http, tls};
use pitap_flow_core::decode::{decode, Decoded, Packet};
use pitap_flow_core::PacketSource;
use pitapd::source::CaptureReader;

/// One direction of a TCP connection: source and destination address and port.
type Direction = ([u8; 16], u16, [u8; 16], u16);

/// Frame number (1-based) -> the fields, as tshark prints them.
fn tshark_fields(file: &str, filter: &str, fields: &[&str]) -> BTreeMap<u64, Vec<String>> {
    let mut args = vec![
        "-r",
        file,
        "-Y",
        filter,
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ];
    args.extend(["-e", "frame.number"]);
    for f in fields {
        args.extend(["-e", f]);
    }
    tshark(&args)
        .lines()
        .map(|l| {
            let mut cols = l.split('\t');
            let n = cols.next().unwrap().parse().unwrap();
            (n, cols.map(str::to_string).collect())
        })
        .collect()
}

/// Calls `visit(frame number, packet)` for every IP packet of a capture.
fn each_packet(file: &str, mut visit: impl FnMut(u64, &Packet<'_>)) {
    let mut reader = CaptureReader::open(std::path::Path::new(file)).unwrap();
    let mut n = 0;
    while let Some(frame) = reader.next_frame().unwrap() {
        n += 1;
        if let Decoded::Ip(pkt) = decode(frame.link, frame.data, frame.vlan_tci) {
            visit(n, &pkt);
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn sorted_list(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .split(',')
        .filter(|x| !x.is_empty())
        .map(|x| x.to_ascii_lowercase())
        .collect();
    v.sort();
    v
}

fn addr_text(a: &[u8]) -> String {
    match a.len() {
        4 => std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string(),
        _ => {
            let mut b = [0u8; 16];
            b.copy_from_slice(a);
            std::net::Ipv6Addr::from(b).to_string()
        }
    }
}

#[test]
fn dns_answers_match_tshark() {
    let mut checked = 0;
    for name in [
        "zeek__dns-edns-ecs.pcap",
        "zeek__dns_mdns.pcap",
        "zeek__wikipedia.pcap",
        "zeek__smtp.pcap",
    ] {
        let file = real_pcap(name);
        let f = file.to_str().unwrap();
        let theirs = tshark_fields(
            f,
            "udp && dns.flags.response==1 && !ipv6.fragment && !(ip.frag_offset > 0) && !(ip.flags.mf == 1)",
            &["dns.qry.name", "dns.a", "dns.aaaa", "dns.cname"],
        );
        let mut ours = BTreeMap::new();
        each_packet(f, |n, pkt| {
            if pkt.proto != 17 || pkt.fragment.is_some() || ![53, 5353].contains(&pkt.src_port) {
                return;
            }
            let Ok(resp) = dns::parse_response(pkt.payload) else {
                return;
            };
            let (mut a, mut aaaa, mut cname) = (Vec::new(), Vec::new(), Vec::new());
            // tshark's dns.a and friends cover every section.
            resp.records(|_, ans| match ans {
                dns::Answer::A { addr, .. } => a.push(addr_text(&addr)),
                dns::Answer::Aaaa { addr, .. } => aaaa.push(addr_text(&addr)),
                dns::Answer::Cname { target, .. } => cname.push(target.as_str().to_string()),
                dns::Answer::Other => {}
            })
            .unwrap();
            ours.insert(n, (resp.qname.as_str().to_string(), a, aaaa, cname));
        });
        assert_eq!(ours.len(), theirs.len(), "{name}: responses");
        for (n, cols) in &theirs {
            let (qname, a, aaaa, cname) = ours
                .get(n)
                .unwrap_or_else(|| panic!("{name} frame {n}: not parsed"));
            let sorted = |v: &Vec<String>| {
                let mut v = v.clone();
                v.sort();
                v
            };
            assert_eq!(
                sorted_list(&cols[0]).first().cloned().unwrap_or_default(),
                *qname,
                "{name} frame {n} qname"
            );
            assert_eq!(sorted_list(&cols[1]), sorted(a), "{name} frame {n} A");
            assert_eq!(sorted_list(&cols[2]), sorted(aaaa), "{name} frame {n} AAAA");
            assert_eq!(
                sorted_list(&cols[3]),
                sorted(cname),
                "{name} frame {n} CNAME"
            );
            checked += 1;
        }
    }
    assert!(checked >= 70, "{checked} responses checked");
}

#[test]
fn tls_client_hellos_match_tshark() {
    let mut checked = 0;
    for name in ["zeek__tls_google-cert-repeat.pcap", "zeek__smtp.pcap"] {
        let file = real_pcap(name);
        let f = file.to_str().unwrap();
        let theirs = tshark_fields(
            f,
            "tcp && tls.handshake.type == 1",
            &[
                "tls.handshake.extensions_server_name",
                "tls.handshake.extensions_alpn_str",
            ],
        );
        // A hello that needs more waits for the next segment of its direction.
        let mut pending: HashMap<Direction, Vec<u8>> = HashMap::new();
        let mut ours = BTreeMap::new();
        each_packet(f, |n, pkt| {
            if pkt.proto != 6 || pkt.payload.is_empty() {
                return;
            }
            let key = (pkt.src_ip, pkt.src_port, pkt.dst_ip, pkt.dst_port);
            let data = match pending.remove(&key) {
                Some(mut head) => {
                    head.extend_from_slice(pkt.payload);
                    head
                }
                None => pkt.payload.to_vec(),
            };
            match tls::parse_client_hello(&data) {
                Ok(tls::Outcome::Hello(h)) => {
                    let alpn: Vec<String> = h.alpn_protocols().map(text).collect();
                    ours.insert(n, (h.sni.map(text).unwrap_or_default(), alpn.join(",")));
                }
                Ok(tls::Outcome::NeedMore(_)) => {
                    pending.insert(key, data);
                }
                _ => {}
            }
        });
        assert_eq!(ours.len(), theirs.len(), "{name}: ClientHellos");
        for (n, cols) in &theirs {
            let (sni, alpn) = ours
                .get(n)
                .unwrap_or_else(|| panic!("{name} frame {n}: not parsed"));
            assert_eq!(&cols[0], sni, "{name} frame {n} SNI");
            assert_eq!(&cols[1], alpn, "{name} frame {n} ALPN");
            checked += 1;
        }
    }
    assert!(checked >= 4, "{checked} hellos checked");
}

#[test]
fn http_requests_match_tshark() {
    let mut checked = 0;
    for name in ["zeek__http_bro.org.pcap", "zeek__wikipedia.pcap"] {
        let file = real_pcap(name);
        let f = file.to_str().unwrap();
        let theirs = tshark_fields(
            f,
            "http.request",
            &["http.request.method", "http.request.uri", "http.host"],
        );
        let mut ours = BTreeMap::new();
        each_packet(f, |n, pkt| {
            if pkt.proto != 6 {
                return;
            }
            if let Ok(Some(r)) = http::parse_request(pkt.payload) {
                ours.insert(
                    n,
                    (
                        text(r.method),
                        text(r.target),
                        r.host.map(text).unwrap_or_default(),
                    ),
                );
            }
        });
        assert_eq!(ours.len(), theirs.len(), "{name}: requests");
        for (n, cols) in &theirs {
            let (method, target, host) = ours
                .get(n)
                .unwrap_or_else(|| panic!("{name} frame {n}: not parsed"));
            assert_eq!(
                (&cols[0], &cols[1], &cols[2]),
                (method, target, host),
                "{name} frame {n}"
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "{checked} requests checked");
}

#[test]
fn dhcp_messages_match_tshark() {
    let file = real_pcap("zeek__dhcp_dhcp.pcap");
    let f = file.to_str().unwrap();
    let theirs = tshark_fields(
        f,
        "dhcp",
        &[
            "dhcp.hw.mac_addr",
            "dhcp.ip.your",
            "dhcp.option.dhcp",
            "dhcp.option.hostname",
        ],
    );
    let mut ours = BTreeMap::new();
    each_packet(f, |n, pkt| {
        if pkt.proto != 17 || ![67, 68].contains(&pkt.dst_port) {
            return;
        }
        let d = dhcp::parse(pkt.payload).unwrap();
        let mac = d
            .chaddr
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        ours.insert(
            n,
            (
                mac,
                addr_text(&d.yiaddr),
                d.msg_type.map(|t| t.to_string()).unwrap_or_default(),
                d.hostname.map(text).unwrap_or_default(),
            ),
        );
    });
    assert_eq!(ours.len(), theirs.len());
    assert!(theirs.len() >= 9);
    for (n, cols) in &theirs {
        let ours = ours
            .get(n)
            .unwrap_or_else(|| panic!("frame {n}: not parsed"));
        assert_eq!(
            (&cols[0], &cols[1], &cols[2], &cols[3]),
            (&ours.0, &ours.1, &ours.2, &ours.3),
            "frame {n}"
        );
    }
}

#[test]
fn dhcpv6_messages_match_tshark() {
    let file = real_pcap("tcpdump__dhcpv6-ia-na.pcap");
    let f = file.to_str().unwrap();
    let theirs = tshark_fields(
        f,
        "dhcpv6",
        &[
            "dhcpv6.msgtype",
            "dhcpv6.iaaddr.ip",
            "dhcpv6.duidll.link_layer_addr",
            "dhcpv6.duidllt.link_layer_addr",
        ],
    );
    let mut ours = BTreeMap::new();
    each_packet(f, |n, pkt| {
        if pkt.proto != 17 || ![546, 547].contains(&pkt.dst_port) {
            return;
        }
        let d = dhcp6::parse(pkt.payload).unwrap();
        ours.insert(n, d);
    });
    assert_eq!(ours.len(), theirs.len());
    assert!(theirs.len() >= 4);
    let mut with_addr = 0;
    for (n, cols) in &theirs {
        let d = ours
            .get(n)
            .unwrap_or_else(|| panic!("frame {n}: not parsed"));
        assert_eq!(cols[0], d.msg_type.to_string(), "frame {n} type");
        let addr = d.addr.map(|a| addr_text(&a)).unwrap_or_default();
        assert_eq!(
            cols[1].split(',').next().unwrap_or(""),
            addr,
            "frame {n} IA address"
        );
        with_addr += usize::from(d.addr.is_some());
        // The client's MAC is one of the DUID link-layer addresses tshark shows.
        let mac = d
            .mac
            .map(|m| {
                m.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            })
            .unwrap();
        let shown: Vec<&str> = cols[2].split(',').chain(cols[3].split(',')).collect();
        assert!(
            shown.contains(&mac.as_str()),
            "frame {n}: {mac} not in {shown:?}"
        );
    }
    assert!(with_addr >= 2, "Advertise and Reply carry the address");
}

/// Names on both ends of the DHCP capture's flows: the exchange's own flow
/// (from 0.0.0.0, the client's MAC) names its client, and the server's
/// packet to the leased address names its responder; the hostname and the
/// address are tshark's (the ACK's `your` address, the hostname option).
#[test]
fn dhcp_leases_name_both_ends() {
    let file = real_pcap("zeek__dhcp_dhcp.pcap");
    let path = file.to_str().unwrap();
    let acks = tshark_fields(path, "dhcp.option.dhcp == 5", &["dhcp.ip.your"]);
    let leased: Vec<String> = acks.values().map(|v| v[0].clone()).collect();
    let names = tshark_fields(path, "dhcp.option.hostname", &["dhcp.option.hostname"]);
    let hostname = names.values().next().expect("a hostname")[0].clone();
    let flows = flows_json(&file, &[]);
    let exchange = flows
        .iter()
        .find(|f| f["src_addr"] == "0.0.0.0" && f["src_port"] == 68)
        .expect("the exchange's own flow");
    assert_eq!(exchange["src_hostname"], hostname.as_str());
    let to_leased: Vec<&serde_json::Value> = flows
        .iter()
        .filter(|f| leased.iter().any(|a| f["dst_addr"] == a.as_str()))
        .collect();
    assert!(!to_leased.is_empty(), "{leased:?}");
    for f in to_leased {
        assert_eq!(f["dst_hostname"], hostname.as_str(), "{f}");
    }
    // No other flow's responder is named.
    assert!(flows
        .iter()
        .filter(|f| !leased.iter().any(|a| f["dst_addr"] == a.as_str()))
        .all(|f| f["dst_hostname"].is_null()));
}
