//! The fields of a stored flow by name, as queries, `--top`, `--by`,
//! reports, alerts and the JSON output name them: every field of the
//! record (`pitap_wire::fields::RECORD_FIELDS`, the one list of them), the
//! tap, and the fields named networks give a flow. Either-side fields
//! (`addr`, `port`, `mac`, `group`) match a flow when either side does.

use std::net::IpAddr;

use pitap_wire::fields::{record_field, RECORD_FIELDS};
pub use pitap_wire::fields::{FieldType, FieldValue, RecordField};

use crate::flow::StoredFlow;
use crate::networks::Networks;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// A field of the record: `RECORD_FIELDS[i]`.
    Record(u8),
    Tap,
    FromInternal,
    ToInternal,
    SrcGroup,
    DstGroup,
    /// From `[geoip]`: the ISO country code and AS number of an address.
    SrcCountry,
    DstCountry,
    SrcAsn,
    DstAsn,
    /// Either side.
    Addr,
    Port,
    Mac,
    Group,
    /// Of the files that crossed the flow (the store's files table): a flow
    /// matches when one of its files does.
    FileSha256,
    FileSha1,
    FileMd5,
    FileMime,
    FileUrl,
    /// The registered vendor of a MAC (IEEE OUI).
    SrcVendor,
    DstVendor,
    /// Community ID v1 (seed 0), computed from the record's addresses,
    /// protocol and ports: not stored, tested on rebuilt rows.
    CommunityId,
}

/// The fields that are not the record's: (name, field, type).
const HOST_FIELDS: &[(&str, Field, FieldType)] = &[
    ("tap", Field::Tap, FieldType::Text),
    ("from_internal", Field::FromInternal, FieldType::Bool),
    ("to_internal", Field::ToInternal, FieldType::Bool),
    ("src_group", Field::SrcGroup, FieldType::Text),
    ("dst_group", Field::DstGroup, FieldType::Text),
    ("src_country", Field::SrcCountry, FieldType::Text),
    ("dst_country", Field::DstCountry, FieldType::Text),
    ("src_asn", Field::SrcAsn, FieldType::Num),
    ("dst_asn", Field::DstAsn, FieldType::Num),
    ("addr", Field::Addr, FieldType::Addr),
    ("port", Field::Port, FieldType::Num),
    ("mac", Field::Mac, FieldType::Text),
    ("group", Field::Group, FieldType::Text),
    ("file_sha256", Field::FileSha256, FieldType::Text),
    ("file_sha1", Field::FileSha1, FieldType::Text),
    ("file_md5", Field::FileMd5, FieldType::Text),
    ("file_mime", Field::FileMime, FieldType::Text),
    ("file_url", Field::FileUrl, FieldType::Text),
    ("src_vendor", Field::SrcVendor, FieldType::Text),
    ("dst_vendor", Field::DstVendor, FieldType::Text),
    ("community_id", Field::CommunityId, FieldType::Text),
];

/// How a field that is computed from another one gets its value: from an
/// address by the named networks of the collector.toml in use, from a MAC
/// by the OUI registry.
pub type Derive = for<'n> fn(&'n Networks, FieldValue<'_>) -> Option<FieldValue<'n>>;

/// Where a field's values come from.
pub enum Source {
    /// A stored column of this name.
    Column(&'static str),
    /// Computed from the value of another field.
    Derived(Field, Derive),
    /// Either of two fields.
    Sides([Field; 2]),
    /// A column of the files table: the store finds the flows first.
    File(&'static str),
    /// Computed from the whole record (see [`Field::with_value`]).
    Record,
}

fn record_index(name: &str) -> Option<Field> {
    let f = record_field(name)?;
    RECORD_FIELDS
        .iter()
        .position(|g| std::ptr::eq(g, f))
        .map(|i| Field::Record(i as u8))
}

impl Field {
    pub fn parse(name: &str) -> Option<Field> {
        HOST_FIELDS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, f, _)| *f)
            .or_else(|| record_index(name))
    }

    /// Every name a query accepts.
    pub fn names() -> impl Iterator<Item = &'static str> {
        RECORD_FIELDS
            .iter()
            .flat_map(|f| std::iter::once(f.name).chain(f.aliases.iter().copied()))
            .chain(HOST_FIELDS.iter().map(|(n, _, _)| *n))
    }

    /// The record field, for fields of the record.
    pub fn record(self) -> Option<&'static RecordField> {
        match self {
            Field::Record(i) => RECORD_FIELDS.get(usize::from(i)),
            _ => None,
        }
    }

    fn host(self) -> Option<&'static (&'static str, Field, FieldType)> {
        HOST_FIELDS.iter().find(|(_, f, _)| *f == self)
    }

    pub fn name(self) -> &'static str {
        match self.record() {
            Some(f) => f.name,
            None => self.host().map_or("?", |h| h.0),
        }
    }

    pub fn field_type(self) -> FieldType {
        match self.record() {
            Some(f) => f.ty,
            None => self.host().map_or(FieldType::Text, |h| h.2),
        }
    }

    fn by_name(name: &str) -> Field {
        // Names of this module's own table, so always found.
        Field::parse(name).unwrap_or(Field::Tap)
    }

    pub fn source(self) -> Source {
        let (src, dst) = (Field::by_name("src_addr"), Field::by_name("dst_addr"));
        match self {
            Field::Record(_) => Source::Column(self.name()),
            Field::Tap => Source::Column("tap"),
            Field::FromInternal => Source::Derived(src, internal),
            Field::ToInternal => Source::Derived(dst, internal),
            Field::SrcGroup => Source::Derived(src, group),
            Field::DstGroup => Source::Derived(dst, group),
            Field::SrcCountry => Source::Derived(src, country),
            Field::DstCountry => Source::Derived(dst, country),
            Field::SrcAsn => Source::Derived(src, asn),
            Field::DstAsn => Source::Derived(dst, asn),
            Field::Addr => Source::Sides([src, dst]),
            Field::Port => Source::Sides([Field::by_name("src_port"), Field::by_name("dst_port")]),
            Field::Mac => Source::Sides([Field::by_name("src_mac"), Field::by_name("dst_mac")]),
            Field::Group => Source::Sides([Field::SrcGroup, Field::DstGroup]),
            Field::FileSha256 => Source::File("sha256"),
            Field::FileSha1 => Source::File("sha1"),
            Field::FileMd5 => Source::File("md5"),
            Field::FileMime => Source::File("mime"),
            Field::FileUrl => Source::File("url"),
            Field::SrcVendor => Source::Derived(Field::by_name("src_mac"), vendor),
            Field::DstVendor => Source::Derived(Field::by_name("dst_mac"), vendor),
            Field::CommunityId => Source::Record,
        }
    }

    /// The sides an either-side field stands for.
    pub fn sides(self) -> Option<[Field; 2]> {
        match self.source() {
            Source::Sides(s) => Some(s),
            _ => None,
        }
    }

    /// The value in `flow`; None where the flow has none (ports of ICMP,
    /// the group of an address in no named network). Either-side fields
    /// have no single value: see [`Field::sides`].
    pub fn value(self, flow: &StoredFlow) -> Option<FieldValue<'_>> {
        let e = &flow.enrichment;
        match self {
            Field::Record(_) => self.record().and_then(|f| (f.get)(&flow.record)),
            Field::Tap => Some(FieldValue::Text(&flow.tap)),
            Field::FromInternal => Some(FieldValue::Bool(e.from_internal)),
            Field::ToInternal => Some(FieldValue::Bool(e.to_internal)),
            Field::SrcGroup => e.src_group.as_deref().map(FieldValue::Text),
            Field::DstGroup => e.dst_group.as_deref().map(FieldValue::Text),
            Field::SrcCountry => e.src_country.as_deref().map(FieldValue::Text),
            Field::DstCountry => e.dst_country.as_deref().map(FieldValue::Text),
            Field::SrcAsn => e.src_asn.map(|n| FieldValue::Num(u64::from(n))),
            Field::DstAsn => e.dst_asn.map(|n| FieldValue::Num(u64::from(n))),
            // A flow does not carry its files: the store resolves these.
            Field::Addr | Field::Port | Field::Mac | Field::Group => None,
            Field::FileSha256 | Field::FileSha1 | Field::FileMd5 | Field::FileMime => None,
            Field::FileUrl => None,
            Field::SrcVendor => crate::oui::vendor(&flow.record.src.mac).map(FieldValue::Text),
            Field::DstVendor => crate::oui::vendor(&flow.record.dst.mac).map(FieldValue::Text),
            // Computed, not borrowed from the flow: see `with_value`.
            Field::CommunityId => None,
        }
    }

    /// `f` of the value in `flow`, for every field, the computed ones too.
    pub fn with_value<R>(
        self,
        flow: &StoredFlow,
        f: impl FnOnce(Option<FieldValue<'_>>) -> R,
    ) -> R {
        match self {
            Field::CommunityId => {
                let id = pitap_wire::community_id::CommunityId::of(&flow.record, 0);
                f(Some(FieldValue::Text(id.as_str())))
            }
            _ => f(self.value(flow)),
        }
    }

    /// The value as `--top` and `--by` print it ("-" for none).
    pub fn text(self, flow: &StoredFlow) -> String {
        self.with_value(flow, |v| v.map_or_else(|| "-".into(), |v| v.to_string()))
    }
}

fn addr(v: FieldValue<'_>) -> Option<IpAddr> {
    match v {
        FieldValue::Addr(a) => Some(a),
        _ => None,
    }
}

fn internal<'n>(n: &'n Networks, v: FieldValue<'_>) -> Option<FieldValue<'n>> {
    Some(FieldValue::Bool(n.is_internal(&addr(v)?)))
}

fn group<'n>(n: &'n Networks, v: FieldValue<'_>) -> Option<FieldValue<'n>> {
    n.group(&addr(v)?).map(FieldValue::Text)
}

fn country<'n>(n: &'n Networks, v: FieldValue<'_>) -> Option<FieldValue<'n>> {
    n.country(&addr(v)?).map(FieldValue::Text)
}

fn asn<'n>(n: &'n Networks, v: FieldValue<'_>) -> Option<FieldValue<'n>> {
    n.asn(&addr(v)?).map(|n| FieldValue::Num(u64::from(n)))
}

fn vendor<'n>(_: &'n Networks, v: FieldValue<'_>) -> Option<FieldValue<'n>> {
    match v {
        FieldValue::Mac(m) => crate::oui::vendor(&m).map(FieldValue::Text),
        _ => None,
    }
}

/// A value that outlives its flow: a group key of `--top`/`--by`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Owned {
    Num(u64),
    Bool(bool),
    Addr(IpAddr),
    Text(String),
    Mac([u8; 6]),
    Proto(u8),
}

impl Owned {
    pub fn of(v: FieldValue<'_>) -> Owned {
        match v {
            FieldValue::Num(n) => Owned::Num(n),
            FieldValue::Bool(b) => Owned::Bool(b),
            FieldValue::Addr(a) => Owned::Addr(a),
            FieldValue::Text(t) => Owned::Text(t.to_string()),
            FieldValue::Mac(m) => Owned::Mac(m),
            FieldValue::Proto(p) => Owned::Proto(p),
        }
    }

    pub fn as_value(&self) -> FieldValue<'_> {
        match self {
            Owned::Num(n) => FieldValue::Num(*n),
            Owned::Bool(b) => FieldValue::Bool(*b),
            Owned::Addr(a) => FieldValue::Addr(*a),
            Owned::Text(t) => FieldValue::Text(t),
            Owned::Mac(m) => FieldValue::Mac(*m),
            Owned::Proto(p) => FieldValue::Proto(*p),
        }
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
    if matches!(field.source(), Source::Record) {
        return Err(format!(
            "{name} is computed from each flow, not stored: it can be searched, not grouped (group by src_addr, dst_addr, dst_port and proto instead)"
        ));
    }
    if matches!(field.source(), Source::File(_)) {
        return Err(format!(
            "{name} is a field of the files a flow carried, not one value per flow (pitap files lists them)"
        ));
    }
    Ok(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_field() {
        for name in Field::names() {
            let f = Field::parse(name).unwrap();
            assert!(name == f.name() || f.record().is_some_and(|r| r.aliases.contains(&name)));
        }
        assert_eq!(Field::parse("dst_ip"), Field::parse("dst_addr"));
        assert_eq!(Field::parse("colour"), None);
        assert!(single_field("addr").is_err());
    }
}
