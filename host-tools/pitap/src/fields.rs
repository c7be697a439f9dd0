//! The fields of a stored flow by name, as queries, `--top`, `--by`,
//! reports, alerts and the JSON output name them: the record's JSON fields
//! (pitap_wire::format::json_value) plus the enrichment fields. Either-side
//! fields (`addr`, `port`, `mac`, `group`) match a flow when either side does.

use std::net::IpAddr;

use pitap_wire::format::mac_text;
use pitap_wire::{has_ports, proto_name};

use crate::store::StoredFlow;

/// What kind of value a field holds, for comparisons and ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Text,
    Addr,
    Num,
    Bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    Tap,
    Action,
    Proto,
    ProtoNum,
    SrcAddr,
    DstAddr,
    SrcPort,
    DstPort,
    SrcMac,
    DstMac,
    SrcPkts,
    SrcBytes,
    DstPkts,
    DstBytes,
    Pkts,
    Bytes,
    DurationMs,
    StartMs,
    EndMs,
    ConnState,
    History,
    EndReason,
    Ingress,
    Vlan,
    InnerVlan,
    IcmpType,
    IcmpCode,
    Continuation,
    FromInternal,
    ToInternal,
    SrcGroup,
    DstGroup,
    DstName,
    SrcHostname,
    Sni,
    Alpn,
    HttpHost,
    HttpRequest,
    Clock,
    RingDrops,
    /// Either side.
    Addr,
    Port,
    Mac,
    Group,
}

const NAMES: &[(&str, Field)] = &[
    ("tap", Field::Tap),
    ("action", Field::Action),
    ("proto", Field::Proto),
    ("proto_num", Field::ProtoNum),
    ("src_addr", Field::SrcAddr),
    ("src_ip", Field::SrcAddr),
    ("dst_addr", Field::DstAddr),
    ("dst_ip", Field::DstAddr),
    ("src_port", Field::SrcPort),
    ("dst_port", Field::DstPort),
    ("src_mac", Field::SrcMac),
    ("dst_mac", Field::DstMac),
    ("src_pkts", Field::SrcPkts),
    ("src_bytes", Field::SrcBytes),
    ("dst_pkts", Field::DstPkts),
    ("dst_bytes", Field::DstBytes),
    ("pkts", Field::Pkts),
    ("bytes", Field::Bytes),
    ("duration_ms", Field::DurationMs),
    ("start_ms", Field::StartMs),
    ("end_ms", Field::EndMs),
    ("conn_state", Field::ConnState),
    ("history", Field::History),
    ("end_reason", Field::EndReason),
    ("ingress", Field::Ingress),
    ("vlan", Field::Vlan),
    ("inner_vlan", Field::InnerVlan),
    ("icmp_type", Field::IcmpType),
    ("icmp_code", Field::IcmpCode),
    ("continuation", Field::Continuation),
    ("from_internal", Field::FromInternal),
    ("to_internal", Field::ToInternal),
    ("src_group", Field::SrcGroup),
    ("dst_group", Field::DstGroup),
    ("dst_name", Field::DstName),
    ("src_hostname", Field::SrcHostname),
    ("sni", Field::Sni),
    ("alpn", Field::Alpn),
    ("http_host", Field::HttpHost),
    ("http_request", Field::HttpRequest),
    ("clock", Field::Clock),
    ("ring_drops", Field::RingDrops),
    ("addr", Field::Addr),
    ("port", Field::Port),
    ("mac", Field::Mac),
    ("group", Field::Group),
];

/// One value of a field in one flow.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Text(String),
    Addr(IpAddr),
    Num(u64),
    Bool(bool),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Text(s) => f.write_str(s),
            Value::Addr(a) => write!(f, "{a}"),
            Value::Num(n) => write!(f, "{n}"),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}

fn nonempty(s: &str) -> Option<Value> {
    (!s.is_empty()).then(|| Value::Text(s.to_string()))
}

impl Field {
    pub fn parse(name: &str) -> Option<Field> {
        NAMES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    pub fn names() -> impl Iterator<Item = &'static str> {
        NAMES.iter().map(|(n, _)| *n)
    }

    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    pub fn field_type(self) -> FieldType {
        use Field::*;
        match self {
            Tap | Action | Proto | SrcMac | DstMac | ConnState | History | EndReason | Ingress
            | SrcGroup | DstGroup | Mac | Group | DstName | SrcHostname | Sni | Alpn | HttpHost
            | HttpRequest | Clock => FieldType::Text,
            SrcAddr | DstAddr | Addr => FieldType::Addr,
            Continuation | FromInternal | ToInternal => FieldType::Bool,
            _ => FieldType::Num,
        }
    }

    /// The sides an either-side field stands for.
    pub fn sides(self) -> Option<[Field; 2]> {
        match self {
            Field::Addr => Some([Field::SrcAddr, Field::DstAddr]),
            Field::Port => Some([Field::SrcPort, Field::DstPort]),
            Field::Mac => Some([Field::SrcMac, Field::DstMac]),
            Field::Group => Some([Field::SrcGroup, Field::DstGroup]),
            _ => None,
        }
    }

    /// The value in `flow`; None where the flow has none (ports of ICMP,
    /// the group of an address in no named network). Either-side fields
    /// have no single value: see [`Field::sides`].
    pub fn value(self, flow: &StoredFlow) -> Option<Value> {
        use Field::*;
        let r = &flow.record;
        let e = &flow.enrichment;
        let num = |n: u64| Some(Value::Num(n));
        let text = |s: &str| Some(Value::Text(s.to_string()));
        match self {
            Tap => text(&flow.tap),
            Action => text(r.action().as_str()),
            Proto => Some(Value::Text(
                proto_name(r.proto).map_or_else(|| r.proto.to_string(), str::to_string),
            )),
            ProtoNum => num(r.proto.into()),
            SrcAddr => Some(Value::Addr(r.src.addr)),
            DstAddr => Some(Value::Addr(r.dst.addr)),
            SrcPort => has_ports(r.proto).then_some(Value::Num(r.src.port.into())),
            DstPort => has_ports(r.proto).then_some(Value::Num(r.dst.port.into())),
            SrcMac => Some(Value::Text(mac_text(&r.src.mac))),
            DstMac => Some(Value::Text(mac_text(&r.dst.mac))),
            SrcPkts => num(r.src.counters.packets),
            SrcBytes => num(r.src.counters.bytes),
            DstPkts => num(r.dst.counters.packets),
            DstBytes => num(r.dst.counters.bytes),
            Pkts => num(r.total_packets()),
            Bytes => num(r.total_bytes()),
            DurationMs => num(r.duration_ms()),
            StartMs => num(r.start_ms),
            EndMs => num(r.end_ms),
            ConnState => text(r.conn_state.as_str()),
            History => text(r.history.as_str()),
            EndReason => text(r.end_reason.as_str()),
            Ingress => text(r.ingress.as_str()),
            Vlan => num(r.vlan.into()),
            InnerVlan => num(r.inner_vlan.into()),
            IcmpType => r.icmp.map(|(t, _)| Value::Num(t.into())),
            IcmpCode => r.icmp.map(|(_, c)| Value::Num(c.into())),
            Continuation => Some(Value::Bool(r.continuation)),
            FromInternal => Some(Value::Bool(e.from_internal)),
            ToInternal => Some(Value::Bool(e.to_internal)),
            DstName => nonempty(r.names.responder_name.as_str()),
            SrcHostname => nonempty(r.names.client_hostname.as_str()),
            Sni => nonempty(r.names.sni.as_str()),
            Alpn => nonempty(r.names.alpn.as_str()),
            HttpHost => nonempty(r.names.http_host.as_str()),
            HttpRequest => nonempty(r.names.http_request.as_str()),
            Clock => text(r.clock.as_str()),
            RingDrops => num(r.ring_drops.into()),
            SrcGroup => e.src_group.as_deref().and_then(text),
            DstGroup => e.dst_group.as_deref().and_then(text),
            Addr | Port | Mac | Group => None,
        }
    }

    /// The value as `--top` and `--by` print it ("-" for none).
    pub fn text(self, flow: &StoredFlow) -> String {
        self.value(flow)
            .map_or_else(|| "-".into(), |v| v.to_string())
    }
}

/// A field name for `--top`/`--by`/reports: one value per flow, so no
/// either-side field.
pub fn single_field(name: &str) -> Result<Field, String> {
    let field = Field::parse(name).ok_or_else(|| {
        format!(
            "unknown field {name:?}; fields: {}",
            Field::names().collect::<Vec<_>>().join(", ")
        )
    })?;
    if field.sides().is_some() {
        return Err(format!(
            "{name} stands for both sides; name one (src_{name} or dst_{name})"
        ));
    }
    Ok(field)
}
