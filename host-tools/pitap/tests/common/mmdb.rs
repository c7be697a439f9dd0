//! A small MaxMind DB (format 2.0) written by the tests themselves: an
//! IPv4 search tree of 24-bit records over a few networks, each with a map
//! of `country.iso_code` or `autonomous_system_number`, and the metadata.
//! Enough for the `maxminddb` reader, which the collector uses.

/// A value of the data section.
pub enum V {
    Str(&'static str),
    U16(u16),
    U32(u32),
    U64(u64),
    Map(Vec<(&'static str, V)>),
    Array(Vec<V>),
}

fn control(out: &mut Vec<u8>, ty: u8, size: usize) {
    let (first, extra): (u8, Vec<u8>) = if size < 29 {
        (size as u8, vec![])
    } else if size < 29 + 256 {
        (29, vec![(size - 29) as u8])
    } else {
        let s = size - 285;
        (30, vec![(s >> 8) as u8, s as u8])
    };
    if ty <= 7 {
        out.push((ty << 5) | first);
    } else {
        // Extended types: type 0 in the control byte, then type - 7.
        out.push(first);
        out.push(ty - 7);
    }
    out.extend(extra);
}

fn uint(out: &mut Vec<u8>, ty: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    control(out, ty, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

pub fn encode(out: &mut Vec<u8>, v: &V) {
    match v {
        V::Str(s) => {
            control(out, 2, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        V::U16(n) => uint(out, 5, u64::from(*n)),
        V::U32(n) => uint(out, 6, u64::from(*n)),
        V::U64(n) => uint(out, 9, *n),
        V::Map(kv) => {
            control(out, 7, kv.len());
            for (k, v) in kv {
                encode(out, &V::Str(k));
                encode(out, v);
            }
        }
        V::Array(items) => {
            control(out, 11, items.len());
            for i in items {
                encode(out, i);
            }
        }
    }
}

/// A database of `networks` (address, prefix length, record).
pub fn write(database_type: &'static str, networks: Vec<([u8; 4], u8, V)>) -> Vec<u8> {
    // The data section: one entry per network.
    let mut data = Vec::new();
    let mut offsets = Vec::new();
    for (_, _, v) in &networks {
        offsets.push(data.len());
        encode(&mut data, v);
    }
    // The tree: node i is [left, right]; None: no data below.
    #[derive(Clone, Copy)]
    enum R {
        Empty,
        Node(usize),
        Data(usize),
    }
    let mut nodes: Vec<[R; 2]> = vec![[R::Empty, R::Empty]];
    for (i, (addr, prefix, _)) in networks.iter().enumerate() {
        let bits = u32::from_be_bytes(*addr);
        let mut node = 0;
        for depth in 0..*prefix {
            let bit = ((bits >> (31 - depth)) & 1) as usize;
            if depth + 1 == *prefix {
                nodes[node][bit] = R::Data(offsets[i]);
            } else {
                node = match nodes[node][bit] {
                    R::Node(n) => n,
                    _ => {
                        nodes.push([R::Empty, R::Empty]);
                        let n = nodes.len() - 1;
                        nodes[node][bit] = R::Node(n);
                        n
                    }
                };
            }
        }
    }
    let count = nodes.len();
    let mut out = Vec::new();
    for node in &nodes {
        for r in node {
            let v = match *r {
                R::Empty => count,
                R::Node(n) => n,
                R::Data(off) => count + 16 + off,
            };
            out.extend_from_slice(&(v as u32).to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    encode(
        &mut out,
        &V::Map(vec![
            ("binary_format_major_version", V::U16(2)),
            ("binary_format_minor_version", V::U16(0)),
            ("build_epoch", V::U64(1_700_000_000)),
            ("database_type", V::Str(database_type)),
            (
                "description",
                V::Map(vec![("en", V::Str("PiTap test database"))]),
            ),
            ("ip_version", V::U16(4)),
            ("languages", V::Array(vec![V::Str("en")])),
            ("node_count", V::U32(count as u32)),
            ("record_size", V::U16(24)),
        ]),
    );
    out
}

/// A record of a country database.
pub fn country(code: &'static str) -> V {
    V::Map(vec![("country", V::Map(vec![("iso_code", V::Str(code))]))])
}

/// A record of an ASN database.
pub fn asn(number: u32, org: &'static str) -> V {
    V::Map(vec![
        ("autonomous_system_number", V::U32(number)),
        ("autonomous_system_organization", V::Str(org)),
    ])
}
