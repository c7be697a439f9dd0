//! A flow record's fields by name: the one list that the JSON line, the
//! collector's query language, `--top`/`--by`, its store and its exporters
//! read. Adding a field to the record is one entry here.

use core::net::IpAddr;

use crate::record::{
    has_ports, proto_name, ClockState, ConnState, EndReason, FlowRecord, History, TapPort, Text,
};

/// What kind of value a field holds (for comparisons, ranges and columns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Text,
    Addr,
    Num,
    Bool,
}

/// One field's value in one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldValue<'a> {
    Num(u64),
    Bool(bool),
    Addr(IpAddr),
    Text(&'a str),
    /// A MAC address, written `aa:bb:cc:dd:ee:ff`.
    Mac([u8; 6]),
    /// An IP protocol, written by its name ("TCP") or number ("250").
    Proto(u8),
}

impl core::fmt::Display for FieldValue<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FieldValue::Num(n) => write!(f, "{n}"),
            FieldValue::Bool(b) => write!(f, "{b}"),
            FieldValue::Addr(a) => write!(f, "{a}"),
            FieldValue::Text(t) => f.write_str(t),
            FieldValue::Mac(m) => write!(
                f,
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ),
            FieldValue::Proto(p) => match proto_name(*p) {
                Some(name) => f.write_str(name),
                None => write!(f, "{p}"),
            },
        }
    }
}

#[cfg(feature = "std")]
impl FieldValue<'_> {
    /// As the JSON line writes it: numbers and booleans as such, the rest
    /// as strings.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            FieldValue::Num(n) => (*n).into(),
            FieldValue::Bool(b) => (*b).into(),
            FieldValue::Text(t) => (*t).into(),
            other => other.to_string().into(),
        }
    }
}

/// A field of the record.
pub struct RecordField {
    pub name: &'static str,
    /// Other names queries accept.
    pub aliases: &'static [&'static str],
    pub ty: FieldType,
    /// The value; `None` where the record has none (the ports of ICMP, an
    /// empty name), which JSON writes as `null`.
    pub get: for<'r> fn(&'r FlowRecord) -> Option<FieldValue<'r>>,
    /// How a stored value goes back into a record: `None` for the fields
    /// computed from others (`bytes`, `action`, ...), which a store keeps
    /// only to filter and group on them. False: not a value of this field.
    pub set: Option<fn(&mut FlowRecord, FieldValue<'_>) -> bool>,
}

fn num(n: impl Into<u64>) -> Option<FieldValue<'static>> {
    Some(FieldValue::Num(n.into()))
}

fn name(t: &str) -> Option<FieldValue<'_>> {
    (!t.is_empty()).then_some(FieldValue::Text(t))
}

fn port(r: &FlowRecord, p: u16) -> Option<FieldValue<'static>> {
    has_ports(r.proto).then_some(FieldValue::Num(p.into()))
}

/// A number into an integer field; false if it is not a number or does
/// not fit.
fn num_into<T: TryFrom<u64>>(v: FieldValue<'_>, set: impl FnOnce(T)) -> bool {
    match v {
        FieldValue::Num(n) => T::try_from(n).map(set).is_ok(),
        _ => false,
    }
}

fn addr_into(v: FieldValue<'_>, to: &mut IpAddr) -> bool {
    match v {
        FieldValue::Addr(a) => {
            *to = a;
            true
        }
        _ => false,
    }
}

fn mac_into(v: FieldValue<'_>, to: &mut [u8; 6]) -> bool {
    match v {
        FieldValue::Mac(m) => {
            *to = m;
            true
        }
        _ => false,
    }
}

fn text_into(v: FieldValue<'_>, set: impl FnOnce(&str)) -> bool {
    match v {
        FieldValue::Text(t) => {
            set(t);
            true
        }
        _ => false,
    }
}

/// One of an enum's names into the enum.
fn named_into<T>(v: FieldValue<'_>, from_name: fn(&str) -> Option<T>, to: &mut T) -> bool {
    match v {
        FieldValue::Text(t) => from_name(t).map(|x| *to = x).is_some(),
        _ => false,
    }
}

/// Every field, in the order the README lists them.
pub static RECORD_FIELDS: &[RecordField] = &[
    RecordField {
        name: "start_ms",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| num(r.start_ms),
        set: Some(|r, v| num_into(v, |n| r.start_ms = n)),
    },
    RecordField {
        name: "end_ms",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| num(r.end_ms),
        set: Some(|r, v| num_into(v, |n| r.end_ms = n)),
    },
    RecordField {
        name: "duration_ms",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| num(r.duration_ms()),
        set: None,
    },
    RecordField {
        name: "action",
        aliases: &[],
        ty: FieldType::Text,
        get: |r| Some(FieldValue::Text(r.action().as_str())),
        set: None,
    },
    RecordField {
        name: "proto",
        aliases: &[],
        ty: FieldType::Text,
        get: |r| Some(FieldValue::Proto(r.proto)),
        set: Some(|r, v| match v {
            FieldValue::Proto(p) => {
                r.proto = p;
                true
            }
            _ => false,
        }),
    },
    RecordField {
        name: "proto_num",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| num(r.proto),
        set: None,
    },
    RecordField {
        name: "src_addr",
        aliases: &["src_ip"],
        ty: FieldType::Addr,
        get: |r| Some(FieldValue::Addr(r.src.addr)),
        set: Some(|r, v| addr_into(v, &mut r.src.addr)),
    },
    RecordField {
        name: "src_port",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| port(r, r.src.port),
        set: Some(|r, v| num_into(v, |n| r.src.port = n)),
    },
    RecordField {
        name: "dst_addr",
        aliases: &["dst_ip"],
        ty: FieldType::Addr,
        get: |r| Some(FieldValue::Addr(r.dst.addr)),
        set: Some(|r, v| addr_into(v, &mut r.dst.addr)),
    },
    RecordField {
        name: "dst_port",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| port(r, r.dst.port),
        set: Some(|r, v| num_into(v, |n| r.dst.port = n)),
    },
    RecordField {
        name: "src_mac",
        aliases: &[],
        ty: FieldType::Text,
        get: |r| Some(FieldValue::Mac(r.src.mac)),
        set: Some(|r, v| mac_into(v, &mut r.src.mac)),
    },
    RecordField {
        name: "dst_mac",
        aliases: &[],
        ty: FieldType::Text,
        get: |r| Some(FieldValue::Mac(r.dst.mac)),
        set: Some(|r, v| mac_into(v, &mut r.dst.mac)),
    },
    RecordField {
        name: "src_pkts",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| num(r.src.counters.packets),
        set: Some(|r, v| num_into(v, |n| r.src.counters.packets = n)),
    },
    RecordField {
        name: "src_bytes",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| num(r.src.counters.bytes),
        set: Some(|r, v| num_into(v, |n| r.src.counters.bytes = n)),
    },
    RecordField {
        name: "src_ip_bytes",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| num(r.src.counters.ip_bytes),
        set: Some(|r, v| num_into(v, |n| r.src.counters.ip_bytes = n)),
    },
    RecordField {
        name: "src_payload_bytes",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| num(r.src.counters.payload_bytes),
        set: Some(|r, v| num_into(v, |n| r.src.counters.payload_bytes = n)),
    },
    RecordField {
        name: "dst_pkts",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| num(r.dst.counters.packets),
        set: Some(|r, v| num_into(v, |n| r.dst.counters.packets = n)),
    },
    RecordField {
        name: "dst_bytes",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| num(r.dst.counters.bytes),
        set: Some(|r, v| num_into(v, |n| r.dst.counters.bytes = n)),
    },
    RecordField {
        name: "dst_ip_bytes",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| num(r.dst.counters.ip_bytes),
        set: Some(|r, v| num_into(v, |n| r.dst.counters.ip_bytes = n)),
    },
    RecordField {
        name: "dst_payload_bytes",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| num(r.dst.counters.payload_bytes),
        set: Some(|r, v| num_into(v, |n| r.dst.counters.payload_bytes = n)),
    },
    RecordField {
        name: "bytes",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| num(r.total_bytes()),
        set: None,
    },
    RecordField {
        name: "pkts",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| num(r.total_packets()),
        set: None,
    },
    RecordField {
        name: "src_tcp_flags",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| num(r.src.counters.tcp_flags),
        set: Some(|r, v| num_into(v, |n| r.src.counters.tcp_flags = n)),
    },
    RecordField {
        name: "dst_tcp_flags",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| num(r.dst.counters.tcp_flags),
        set: Some(|r, v| num_into(v, |n| r.dst.counters.tcp_flags = n)),
    },
    RecordField {
        name: "conn_state",
        aliases: &[],
        ty: FieldType::Text,
        get: |r| Some(FieldValue::Text(r.conn_state.as_str())),
        set: Some(|r, v| named_into(v, ConnState::from_name, &mut r.conn_state)),
    },
    RecordField {
        name: "history",
        aliases: &[],
        ty: FieldType::Text,
        get: |r| Some(FieldValue::Text(r.history.as_str())),
        set: Some(|r, v| text_into(v, |t| r.history = History::from_text(t))),
    },
    RecordField {
        name: "end_reason",
        aliases: &[],
        ty: FieldType::Text,
        get: |r| Some(FieldValue::Text(r.end_reason.as_str())),
        set: Some(|r, v| named_into(v, EndReason::from_name, &mut r.end_reason)),
    },
    RecordField {
        name: "continuation",
        aliases: &[],
        ty: FieldType::Bool,
        get: |r| Some(FieldValue::Bool(r.continuation)),
        set: Some(|r, v| match v {
            FieldValue::Bool(b) => {
                r.continuation = b;
                true
            }
            _ => false,
        }),
    },
    RecordField {
        name: "ingress",
        aliases: &[],
        ty: FieldType::Text,
        get: |r| Some(FieldValue::Text(r.ingress.as_str())),
        set: Some(|r, v| named_into(v, TapPort::from_name, &mut r.ingress)),
    },
    RecordField {
        name: "vlan",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| num(r.vlan),
        set: Some(|r, v| num_into(v, |n| r.vlan = n)),
    },
    RecordField {
        name: "inner_vlan",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| num(r.inner_vlan),
        set: Some(|r, v| num_into(v, |n| r.inner_vlan = n)),
    },
    RecordField {
        name: "icmp_type",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| r.icmp.map(|(t, _)| FieldValue::Num(t.into())),
        set: Some(|r, v| num_into(v, |n| r.icmp = Some((n, r.icmp.map_or(0, |(_, c)| c))))),
    },
    RecordField {
        name: "icmp_code",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| r.icmp.map(|(_, c)| FieldValue::Num(c.into())),
        set: Some(|r, v| num_into(v, |n| r.icmp = Some((r.icmp.map_or(0, |(t, _)| t), n)))),
    },
    RecordField {
        name: "dst_name",
        aliases: &[],
        ty: FieldType::Text,
        get: |r| name(r.names.responder_name.as_str()),
        set: Some(|r, v| {
            text_into(v, |t| {
                r.names.responder_name = Text::from_bytes(t.as_bytes())
            })
        }),
    },
    RecordField {
        name: "src_hostname",
        aliases: &[],
        ty: FieldType::Text,
        get: |r| name(r.names.client_hostname.as_str()),
        set: Some(|r, v| {
            text_into(v, |t| {
                r.names.client_hostname = Text::from_bytes(t.as_bytes())
            })
        }),
    },
    RecordField {
        name: "dst_hostname",
        aliases: &[],
        ty: FieldType::Text,
        get: |r| name(r.names.server_hostname.as_str()),
        set: Some(|r, v| {
            text_into(v, |t| {
                r.names.server_hostname = Text::from_bytes(t.as_bytes())
            })
        }),
    },
    RecordField {
        name: "sni",
        aliases: &[],
        ty: FieldType::Text,
        get: |r| name(r.names.sni.as_str()),
        set: Some(|r, v| text_into(v, |t| r.names.sni = Text::from_bytes(t.as_bytes()))),
    },
    RecordField {
        name: "alpn",
        aliases: &[],
        ty: FieldType::Text,
        get: |r| name(r.names.alpn.as_str()),
        set: Some(|r, v| text_into(v, |t| r.names.alpn = Text::from_bytes(t.as_bytes()))),
    },
    RecordField {
        name: "http_host",
        aliases: &[],
        ty: FieldType::Text,
        get: |r| name(r.names.http_host.as_str()),
        set: Some(|r, v| text_into(v, |t| r.names.http_host = Text::from_bytes(t.as_bytes()))),
    },
    RecordField {
        name: "http_request",
        aliases: &[],
        ty: FieldType::Text,
        get: |r| name(r.names.http_request.as_str()),
        set: Some(|r, v| text_into(v, |t| r.names.http_request = Text::from_bytes(t.as_bytes()))),
    },
    RecordField {
        name: "clock",
        aliases: &[],
        ty: FieldType::Text,
        get: |r| Some(FieldValue::Text(r.clock.as_str())),
        set: Some(|r, v| named_into(v, ClockState::from_name, &mut r.clock)),
    },
    RecordField {
        name: "ring_drops",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| num(r.ring_drops),
        set: Some(|r, v| num_into(v, |n| r.ring_drops = n)),
    },
    RecordField {
        name: "missed_bytes",
        aliases: &[],
        ty: FieldType::Num,
        get: |r| num(r.missed_bytes),
        set: Some(|r, v| num_into(v, |n| r.missed_bytes = n)),
    },
];

/// The field called `name` (or one of its aliases).
pub fn record_field(name: &str) -> Option<&'static RecordField> {
    RECORD_FIELDS
        .iter()
        .find(|f| f.name == name || f.aliases.contains(&name))
}
