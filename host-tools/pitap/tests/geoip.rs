//! GeoIP from MaxMind-format databases the test writes itself: country and
//! AS of outside addresses as query fields, in `--top`, in JSON lines, in
//! reports; without a database the same store answers without them; a
//! missing database is an error naming the key.

mod common;

use std::path::Path;
use std::process::Command;

use common::mmdb::{self, asn, country};
use common::traffic::{host, Session, Traffic};
use common::*;

fn pitap(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pitap"))
        .args(args)
        .output()
        .expect("pitap");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn store_with_outside_peers(dir: &Path) -> std::path::PathBuf {
    let mut t = Traffic::default();
    let inside = host(0x10, [172, 30, 0, 86]);
    // Three outside peers in two countries and two AS; one nowhere.
    let peers = [
        (host(0x21, [198, 51, 100, 7]), 3u16),
        (host(0x22, [203, 0, 113, 9]), 2),
        (host(0x23, [192, 0, 2, 1]), 1),
    ];
    let mut at = 1_000;
    for (peer, n) in peers {
        for i in 0..n {
            t.session(
                at,
                peer,
                50_000 + i,
                inside,
                443,
                Session::Complete {
                    up: 100,
                    down: 4_000,
                },
            );
            at += 700;
        }
    }
    let capture = dir.join("outside.pcap");
    t.write(&capture);
    let (config, keys) = keygen(dir, &["edge"]);
    let (child, addr) = start_collector(&config, &["--until-final", "--idle-exit", "20"]);
    replay_to(&capture, &addr, "edge", &keys[0]);
    finish(child);
    store_in(dir)
}

#[test]
fn countries_and_as_numbers_are_fields_of_outside_addresses() {
    let dir = temp_dir("geoip");
    let store = store_with_outside_peers(&dir);
    let s = store.to_str().unwrap();
    let countries = dir.join("countries.mmdb");
    std::fs::write(
        &countries,
        mmdb::write(
            "GeoLite2-Country",
            vec![
                ([198, 51, 100, 0], 24, country("CN")),
                ([203, 0, 113, 0], 24, country("BR")),
            ],
        ),
    )
    .unwrap();
    let asns = dir.join("asn.mmdb");
    std::fs::write(
        &asns,
        mmdb::write(
            "GeoLite2-ASN",
            vec![
                ([198, 51, 100, 0], 25, asn(64_500, "Example Net")),
                ([203, 0, 113, 0], 24, asn(64_501, "Other Net")),
            ],
        ),
    )
    .unwrap();
    let config = dir.join("geo.toml");
    std::fs::write(
        &config,
        format!(
            "[networks]\ninternal = [\"172.30.0.0/16\"]\n\n[geoip]\ncountry = \"{}\"\nasn = \"{}\"\n",
            countries.display(),
            asns.display()
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let count = |q: &str, extra: &[&str]| -> u64 {
        let mut args = vec!["query", "--store", s, "--since", "0", "--count", q];
        args.extend_from_slice(extra);
        let (ok, out, err) = pitap(&args);
        assert!(ok, "{q}: {err}");
        out.trim().parse().unwrap()
    };
    assert_eq!(count("src_country:CN", &["--config", c]), 3);
    assert_eq!(count("src_country:BR", &["--config", c]), 2);
    assert_eq!(count("src_asn:64500", &["--config", c]), 3);
    assert_eq!(count("src_asn:[64500 TO 64501]", &["--config", c]), 5);
    assert_eq!(count("_exists_:src_country", &["--config", c]), 5);
    assert_eq!(
        count(
            "NOT _exists_:src_country AND from_internal:false",
            &["--config", c]
        ),
        1
    );
    // The inside end is in no database.
    assert_eq!(count("_exists_:dst_country", &["--config", c]), 0);
    // Without the databases the fields are simply absent.
    assert_eq!(count("_exists_:src_country", &[]), 0);
    let (ok, out, err) = pitap(&[
        "query",
        "--store",
        s,
        "--since",
        "0",
        "--config",
        c,
        "--top",
        "src_country",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("CN") && out.contains("BR"), "{out}");
    let (ok, out, _) = pitap(&[
        "query",
        "--store",
        s,
        "--since",
        "0",
        "--config",
        c,
        "--json",
        "src_country:BR",
    ]);
    assert!(ok);
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["src_country"], "BR");
        assert_eq!(v["src_asn"], 64_501);
        assert!(v.get("dst_country").is_none(), "{v}");
    }
    // The report names where inbound connections come from.
    let (ok, out, err) = pitap(&[
        "report", "--store", s, "--since", "0", "--config", c, "--only", "inbound", "--json",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("\"CN\"") && out.contains("\"BR\""), "{out}");
    // A database that is not there names its key.
    std::fs::write(&config, "[geoip]\ncountry = \"/nonexistent/x.mmdb\"\n").unwrap();
    let (ok, _, err) = pitap(&[
        "query", "--store", s, "--since", "0", "--config", c, "--count",
    ]);
    assert!(!ok);
    assert!(err.contains("geoip.country: /nonexistent/x.mmdb"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
