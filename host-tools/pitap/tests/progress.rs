//! The progress line: on a terminal (a real pty, made by util-linux
//! `script`) a query past its wait shows flows scanned and erases the line
//! before the result; through pipes nothing but the result is written.

use std::net::IpAddr;
use std::process::Command;

use pitap::flow::StoredFlow;
use pitap::networks::Networks;
use pitap::store::Store;
use pitap_wire::FlowRecord;

fn store(path: &std::path::Path) {
    let mut store = Store::open(path).unwrap();
    for c in 0..4u64 {
        let flows: Vec<StoredFlow> = (0..1000u64)
            .map(|i| {
                let mut r = FlowRecord {
                    start_ms: 1_000 + c * 1000 + i,
                    end_ms: 1_000 + c * 1000 + i,
                    proto: 17,
                    ..FlowRecord::default()
                };
                r.dst.addr = IpAddr::from([10, 0, 0, (i % 5) as u8]);
                StoredFlow::new("t".into(), r, &Networks::default())
            })
            .collect();
        store.commit(&flows, &[], None).unwrap();
    }
}

#[test]
fn a_terminal_sees_progress_and_a_pipe_does_not() {
    let dir = std::env::temp_dir().join(format!("pitap-progress-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.db");
    store(&path);
    let query = format!(
        "{} query --store {} --since 0 --top dst_addr",
        env!("CARGO_BIN_EXE_pitap"),
        path.display()
    );
    let on_tty = Command::new("script")
        .args(["-qec", &query, "/dev/null"])
        .env("PITAP_PROGRESS_AFTER_MS", "0")
        .output()
        .expect("util-linux script");
    let tty = String::from_utf8_lossy(&on_tty.stdout);
    assert!(on_tty.status.success(), "{tty}");
    assert!(
        tty.contains("pitap query: 1000 of 4000 flows scanned (25%)"),
        "{tty:?}"
    );
    // Erased before the result, which follows on a clean line.
    let erase = tty.rfind("\r\x1b[2K").unwrap();
    let result = tty.find("dst_addr").unwrap();
    assert!(erase < result, "{tty:?}");
    assert!(tty.contains("4000 flows, 5 distinct values"), "{tty:?}");

    let piped = Command::new(env!("CARGO_BIN_EXE_pitap"))
        .args([
            "query",
            "--store",
            path.to_str().unwrap(),
            "--since",
            "0",
            "--top",
            "dst_addr",
        ])
        .env("PITAP_PROGRESS_AFTER_MS", "0")
        .output()
        .unwrap();
    assert!(piped.status.success());
    assert!(
        piped.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    assert!(String::from_utf8_lossy(&piped.stdout).contains("4000 flows, 5 distinct values"));
    let _ = std::fs::remove_dir_all(&dir);
}
