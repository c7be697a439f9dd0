//! The tap's counters, read once per tick, and the three views of them:
//! the display's snapshot, the health report (the counters themselves) and
//! the status file.

use pitap_wire::messages::{ClockHealth, Health, PortHealth, UplinkHealth};
use serde_json::json;

use super::Tap;
use crate::status::state::{Snapshot, UplinkSnapshot};
use crate::uplink::Uplink;

impl Tap {
    /// Reads the tap's counters once: the kernel's ring statistics, the
    /// links, the engine and the uplink. The display, the health report and
    /// the status file are all views of `self.counters`.
    pub(super) fn refresh_counters(&mut self) {
        for source in &mut self.sources {
            if let Err(e) = source.update_counters() {
                eprintln!("pitapd: ring statistics of port {:?}: {e}", source.port());
            }
        }
        // Flows open now may have missed the frames the rings dropped.
        let drops: u64 = self.sources.iter().map(|s| s.counters().ring_drops).sum();
        if drops > self.drops_noted {
            self.engine.note_ring_drops(drops - self.drops_noted);
            self.drops_noted = drops;
        }
        self.links.refresh();
        let s = self.engine.stats();
        let u = self.sinks.uplink_counters();
        let uplink = self.sinks.uplink.as_ref();
        self.counters = Health {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_s: self.started.elapsed().as_secs(),
            frames: s.frames,
            bytes: s.bytes,
            anomalies: pitap_flow_core::Anomaly::ALL
                .iter()
                .filter(|a| s.anomaly(**a) > 0)
                .map(|a| (a.as_str().to_string(), s.anomaly(*a)))
                .collect(),
            flows_active: self.engine.active_flows() as u64,
            flows_capacity: self.engine.config().capacity as u64,
            evictions: s.evictions,
            own_traffic_frames: self.own_traffic,
            ports: self
                .sources
                .iter()
                .zip(&self.links.states)
                .map(|(src, link)| {
                    let c = src.counters();
                    PortHealth {
                        port: src.port().as_str().to_string(),
                        name: link.name.clone(),
                        carrier: link.carrier,
                        admin_up: link.admin_up,
                        speed_mbps: link.speed_mbps,
                        frames: c.frames,
                        bytes: c.bytes,
                        ring_drops: c.ring_drops,
                        ring_freezes: c.ring_freezes,
                        bad_ring_entries: c.bad_entries,
                    }
                })
                .collect(),
            buffer_batches: u.pending,
            buffer_capacity: uplink.map_or(0, |u| u.buffer_capacity() as u64),
            dropped_batches: u.dropped,
            link_propagation_events: self.links.propagation_events,
            clock: uplink.map_or_else(ClockHealth::default, Uplink::clock_health),
            uplink: uplink.map_or_else(UplinkHealth::default, Uplink::uplink_health),
            leds: self.panel.leds(),
        };
    }

    /// What the status LEDs and display need: the counters, and what only
    /// the display shows.
    pub(super) fn snapshot(&self) -> Snapshot {
        let h = &self.counters;
        let mac = self
            .ports
            .own_macs
            .last()
            .map(pitap_wire::format::mac_text)
            .unwrap_or_default();
        Snapshot {
            tap_id: self.config.tap.id.clone(),
            version: h.version.clone(),
            board: self.board.clone(),
            uptime_s: self.started.elapsed().as_secs(),
            ports: h.ports.clone(),
            flows_active: self.engine.active_flows() as u64,
            flows_capacity: h.flows_capacity,
            malformed: self.engine.stats().dropped(),
            evictions: h.evictions,
            uplink: self.sinks.uplink.as_ref().map(|u| {
                let c = u.counters();
                UplinkSnapshot {
                    last_ack_ms_ago: u.last_ack().map(|t| t.elapsed().as_millis() as u64),
                    pending: c.pending,
                    dropped: c.dropped,
                    send_errors: c.send_errors,
                }
            }),
            clock: h.clock.clone(),
            address: self
                .sinks
                .uplink
                .as_ref()
                .and_then(|u| u.address())
                .unwrap_or_default(),
            mac,
            talkers: self.sinks.talkers.top(5),
            config_error: self.config_errors.is_some(),
            bypass: self.bypass.as_ref().map(|b| b.machine.state()),
        }
    }

    /// The status file: the counters, and what only the file shows.
    pub(super) fn status(&self) -> serde_json::Value {
        let h = &self.counters;
        let s = self.engine.stats();
        let anomalies: serde_json::Map<String, serde_json::Value> = pitap_flow_core::Anomaly::ALL
            .iter()
            .map(|a| (a.as_str().to_string(), json!(s.anomaly(*a))))
            .collect();
        let u = self.sinks.uplink_counters();
        let uplink = self.sinks.uplink.as_ref();
        let ring = self.engine.ring().map(|r| {
            let s = r.stats();
            json!({
                "capacity_bytes": r.capacity(), "used_bytes": r.used(),
                "packets_kept": s.packets_kept, "bytes_kept": s.bytes_kept,
                "packets_cut": s.packets_cut, "bytes_cut": s.bytes_cut,
                "packets_overwritten": s.packets_overwritten, "bytes_overwritten": s.bytes_overwritten,
                "flows_forgotten": s.flows_forgotten, "flows_flagged": s.flows_flagged,
            })
        });
        let answers = uplink.map(|u| {
            let a = u.answer_counters();
            json!({ "taken": a.requests, "answered": a.answered, "abandoned": a.abandoned, "chunks": a.chunks, "resent": a.resent })
        });
        let f = self.engine.file_stats();
        let files = json!({
            "connections": f.streams, "connections_not_followed": f.streams_full,
            "objects": f.objects, "hashed": f.hashed, "bytes_hashed": f.bytes_hashed,
            "too_large": f.too_large, "over_budget": f.over_budget, "incomplete": f.incomplete,
            "encoded": f.encoded, "reordered_segments": f.reordered,
        });
        json!({
            "tap_id": self.config.tap.id,
            "version": h.version,
            "mode": self.config.tap.mode.as_str(),
            "uptime_s": h.uptime_s,
            "ports": h.ports,
            "own_traffic_frames": h.own_traffic_frames,
            "link_propagation_events": h.link_propagation_events,
            "watchdog": self.watchdog.as_ref().map(|w| json!({ "feeds": w.feeds, "healthy": w.healthy })),
            "bypass": self.bypass.as_ref().map(|b| b.status()),
            "update": self.updater.as_ref().map(|u| u.status_json()),
            "clock": h.clock,
            "engine": {
                "frames": h.frames,
                "bytes": h.bytes,
                "ip_frames": s.ip_frames,
                "dropped": s.dropped(),
                "anomalies": anomalies,
                "flows_active": h.flows_active,
                "flows_capacity": h.flows_capacity,
                "flows_created": s.flows_created,
                "records": s.records,
                "evictions": h.evictions,
            },
            "uplink": {
                "transport": uplink.map(Uplink::describe),
                "batches": u.batches,
                "records": u.records,
                "transmissions": u.transmissions,
                "acked": u.acked,
                "pending": u.pending,
                "in_flight": u.in_flight,
                "retransmits": u.retransmits,
                "dropped_batches": u.dropped,
                "send_errors": u.send_errors,
                "hellos": u.hellos,
                "round_trip_ms": uplink.and_then(Uplink::round_trip).map(|d| d.as_secs_f64() * 1e3),
                "rto_ms": h.uplink.rto_ms,
                "window": h.uplink.window,
                "challenge_after_ms": uplink.and_then(Uplink::challenge_after).map(|d| d.as_secs_f64() * 1e3),
                "refused_replies": uplink.map(|u| u.refused().map(|(r, n)| (r.as_str().to_string(), json!(n))).collect::<serde_json::Map<_, _>>()),
                "last_ack_s_ago": uplink.and_then(Uplink::last_ack).map(|t| t.elapsed().as_secs()),
                "last_sync_s_ago": uplink.and_then(Uplink::last_sync).map(|t| t.elapsed().as_secs()),
                "packet_requests": answers,
            },
            "ring": ring,
            "files": files,
        })
    }
}
