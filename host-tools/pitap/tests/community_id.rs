//! Community ID in the collector: on every stored flow's JSON (as the tap
//! wrote it), a query field that finds the flows of one conversation, and
//! in the GELF export. (pitapd's IDs are checked against the reference
//! implementation in pitapd's tests.)

mod common;

use std::process::Command;

use common::*;

#[test]
fn stored_flows_carry_it_and_a_query_finds_them_by_it() {
    let dir = temp_dir("community-id");
    let (config, keys) = keygen(&dir, &["lab"]);
    let file = real_pcap("zeek__wikipedia.pcap");
    let (child, addr) = start_collector(&config, &["--until-final", "--idle-exit", "20"]);
    replay_to(&file, &addr, "lab", &keys[0]);
    finish(child);
    let store = store_in(&dir);
    let stored = stored_json(&store);
    assert!(stored.len() > 20);
    let tap_lines: Vec<serde_json::Value> = printed(&file, "json", "lab")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids = |v: &[serde_json::Value]| {
        let mut ids: Vec<String> = v
            .iter()
            .map(|f| f["community_id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&stored), ids(&tap_lines));
    for id in ids(&stored) {
        assert!(id.starts_with("1:") && id.len() == 30, "{id}");
    }

    // The first flow's ID finds every flow with that ID, and only those.
    let id = stored[0]["community_id"].as_str().unwrap();
    let want = stored.iter().filter(|f| f["community_id"] == id).count();
    let out = Command::new(env!("CARGO_BIN_EXE_pitap"))
        .args(["query", "--since", "0", "--json", "--store"])
        .arg(&store)
        .arg(format!("community_id:\"{id}\""))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let found: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(found.len(), want);
    assert!(found.iter().all(|f| f["community_id"] == id));
    // NOT excludes them.
    let out = Command::new(env!("CARGO_BIN_EXE_pitap"))
        .args(["query", "--since", "0", "--count", "--store"])
        .arg(&store)
        .arg(format!("NOT community_id:\"{id}\""))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        (stored.len() - want).to_string()
    );

    // GELF carries it as `_community_id`.
    let record = pitap_wire::FlowRecord::default();
    let flow =
        pitap::flow::StoredFlow::new("lab".into(), record, &pitap::networks::Networks::default());
    let gelf = pitap::export::gelf::message(&flow);
    assert_eq!(
        gelf["_community_id"].as_str(),
        Some(pitap_wire::community_id::CommunityId::of(&flow.record, 0).as_str())
    );
    let _ = std::fs::remove_dir_all(&dir);
}
