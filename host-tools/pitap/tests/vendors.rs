//! Vendors and hostnames of devices: the real DHCP capture through a sealed
//! uplink into the store; `pitap devices` names each device's vendor as
//! Debian's copy of the IEEE registry (`ieee-data`) has it, and every
//! hostname its leases gave it; `src_vendor`/`dst_vendor` are query fields.

use std::process::Command;

mod common;

use common::*;
use serde_json::Value;

fn pitap(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pitap"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn devices_have_vendors_and_every_hostname() {
    let dir = temp_dir("vendors");
    let (config, keys) = keygen(&dir, &["lab-tap"]);
    let (child, addr) = start_collector(&config, &["--until-final", "--idle-exit", "20"]);
    replay_to(
        &real_pcap("zeek__dhcp_dhcp.pcap"),
        &addr,
        "lab-tap",
        &keys[0],
    );
    finish(child);
    let store = store_in(&dir);
    let store = store.to_str().unwrap();
    let devices: Vec<Value> = pitap(&["devices", "--json", "--store", store])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let client = devices
        .iter()
        .find(|d| d["hostnames"].as_array().is_some_and(|h| !h.is_empty()))
        .unwrap_or_else(|| panic!("a device with a hostname: {devices:?}"));
    assert_eq!(client["hostnames"][0]["hostname"], "btest.is.cool");
    // Each device's vendor is the registry's line for its prefix.
    let registry = std::fs::read_to_string("/usr/share/ieee-data/oui.csv")
        .expect("ieee-data (scripts/setup.sh installs it)");
    let registered = |mac: &str| -> Option<String> {
        let prefix: String = mac.split(':').take(3).collect::<String>().to_uppercase();
        registry
            .lines()
            .find(|l| l.starts_with("MA-L,") && l[5..].starts_with(&prefix))
            .map(|l| {
                let rest = &l[12..];
                match rest.strip_prefix('"') {
                    Some(q) => q[..q.find('"').unwrap()].to_string(),
                    None => rest.split(',').next().unwrap().to_string(),
                }
            })
    };
    for d in &devices {
        let mac = d["mac"].as_str().unwrap();
        assert_eq!(
            d["vendor"].as_str().map(str::to_string),
            registered(mac),
            "{d}"
        );
    }
    let vendor = client["vendor"]
        .as_str()
        .expect("the client's prefix is registered");
    let text = pitap(&["devices", "--store", store]);
    assert!(
        text.contains(vendor) && text.contains("btest.is.cool"),
        "{text}"
    );
    // Query fields: the flows from the client's MAC are its vendor's.
    let mac_prefix = format!("{}*", &client["mac"].as_str().unwrap()[..8]);
    let q = format!("src_vendor:\"{vendor}\"");
    let n = pitap(&["query", &q, "--since", "0", "--count", "--store", store]);
    let by_mac = pitap(&[
        "query",
        &format!("src_mac:{mac_prefix}"),
        "--since",
        "0",
        "--count",
        "--store",
        store,
    ]);
    assert!(n.trim().parse::<u64>().unwrap() > 0);
    assert_eq!(n, by_mac);
    let json = pitap(&["query", &q, "--since", "0", "--json", "--store", store]);
    let want = format!("\"src_vendor\":\"{vendor}\"");
    assert!(json.lines().all(|l| l.contains(&want)), "{json}");
}
