//! A flow as the host tools pass it around: the record as the tap sent it,
//! the tap's name, and what the named networks in use say about its ends.
//! Exporters, alerts, reports and queries depend on this, not on the store.

use pitap_wire::format::json_value;
use pitap_wire::FlowRecord;

use crate::networks::{Enrichment, Networks};

#[derive(Clone, Debug, PartialEq)]
pub struct StoredFlow {
    pub tap: String,
    pub record: FlowRecord,
    pub enrichment: Enrichment,
}

impl StoredFlow {
    /// A flow with the enrichment `networks` give it.
    pub fn new(tap: String, record: FlowRecord, networks: &Networks) -> StoredFlow {
        StoredFlow {
            tap,
            enrichment: networks.enrich(&record),
            record,
        }
    }

    /// One flow as a JSON object: the record's fields, the tap and the
    /// enrichment, by the names queries use.
    pub fn json(&self) -> serde_json::Value {
        let mut v = json_value(&self.record, &self.tap);
        if let Some(o) = v.as_object_mut() {
            let e = &self.enrichment;
            o.insert("from_internal".into(), e.from_internal.into());
            o.insert("to_internal".into(), e.to_internal.into());
            o.insert("src_group".into(), e.src_group.clone().into());
            o.insert("dst_group".into(), e.dst_group.clone().into());
            // GeoIP fields only where a database gave them.
            for (k, v) in [
                ("src_country", &e.src_country),
                ("dst_country", &e.dst_country),
            ] {
                if let Some(v) = v {
                    o.insert(k.into(), v.clone().into());
                }
            }
            for (k, v) in [("src_asn", e.src_asn), ("dst_asn", e.dst_asn)] {
                if let Some(v) = v {
                    o.insert(k.into(), v.into());
                }
            }
            for (k, mac) in [
                ("src_vendor", &self.record.src.mac),
                ("dst_vendor", &self.record.dst.mac),
            ] {
                if let Some(v) = crate::oui::vendor(mac) {
                    o.insert(k.into(), v.into());
                }
            }
        }
        v
    }
}
