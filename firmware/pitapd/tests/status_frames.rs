//! Every display page rendered at 128x64 from a fixed tap state and
//! compared pixel by pixel with its golden frame (tests/golden/*.png, shown
//! in the README). After a deliberate change to the pages, regenerate them
//! with `UPDATE_GOLDEN=1 cargo test -p pitapd --test status_frames` and look
//! at them before committing.

use std::path::PathBuf;

use pitap_wire::messages::ClockHealth;
use pitapd::status::hw::StatusHardware;
use pitapd::status::logic::StatusModel;
use pitapd::status::pages::Page;
use pitapd::status::render::{draw, Framebuffer};
use pitapd::status::sim::Simulator;
use pitapd::status::state::{PortSnapshot, Snapshot, UplinkSnapshot};

fn tap_state(frames_a: u64, frames_b: u64) -> Snapshot {
    Snapshot {
        tap_id: "rack3-tap1".into(),
        version: "0.1.0".into(),
        board: "Raspberry Pi 4 Model B".into(),
        uptime_s: 3 * 86_400 + 4 * 3600 + 12 * 60 + 9,
        ports: vec![
            PortSnapshot {
                name: "eth0".into(),
                carrier: true,
                speed_mbps: Some(1000),
                frames: frames_a,
                bytes: frames_a * 800,
                ring_drops: 0,
                ..PortSnapshot::default()
            },
            PortSnapshot {
                name: "eth1".into(),
                carrier: true,
                speed_mbps: Some(1000),
                frames: frames_b,
                bytes: frames_b * 120,
                ring_drops: 3,
                ..PortSnapshot::default()
            },
        ],
        flows_active: 1234,
        flows_capacity: 65_536,
        malformed: 17,
        evictions: 0,
        uplink: Some(UplinkSnapshot {
            last_ack_ms_ago: Some(300),
            pending: 1,
            dropped: 0,
            send_errors: 0,
        }),
        // Booted at 1970 without a real-time clock, synchronised since.
        clock: ClockHealth {
            synced: true,
            source: "collector".into(),
            offset_ms: 1_796_000_000_000,
            uncertainty_us: 800,
            steps: 0,
        },
        address: "192.0.2.57".into(),
        mac: "02:50:54:41:50:01".into(),
        talkers: vec![
            ("192.0.2.10".into(), 48_200_000),
            ("198.51.100.7".into(), 9_100_000),
            ("2001:db8::20".into(), 1_250_000),
            ("192.0.2.33".into(), 310_000),
        ],
        config_error: false,
        // With the bypass board, inline.
        bypass: Some(pitapd::status::bypass::State::Inline { since_ms: 0 }),
    }
}

fn golden(page: Page) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{}.png", page.name()))
}

/// The frame of a page after one second of traffic.
fn render(page: Page) -> Framebuffer {
    let mut model = StatusModel::default();
    model.set_page(page);
    model.update(0, &tap_state(1_000_000, 400_000), 1000);
    let view = model.update(1000, &tap_state(1_012_400, 403_100), 1000);
    let mut frame = Framebuffer::default();
    let Ok(()) = draw(&mut frame, view.page, &view.lines);
    frame
}

#[test]
fn every_page_matches_its_golden_frame() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for page in Page::ALL {
        let frame = render(page);
        let path = golden(page);
        if update {
            std::fs::write(&path, frame.to_png(4).unwrap()).unwrap();
            continue;
        }
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let expected = Framebuffer::from_png(&bytes).unwrap();
        let diff = frame.diff(&expected);
        assert_eq!(
            diff,
            0,
            "{page:?} differs from {} in {diff} pixels",
            path.display()
        );
        // A page is not blank: text was drawn below the title bar.
        let lit_below_title = (0..128)
            .flat_map(|x| (12..60).map(move |y| (x, y)))
            .filter(|&(x, y)| frame.pixel(x, y))
            .count();
        assert!(lit_below_title > 100, "{page:?} looks empty");
    }
}

#[test]
fn the_simulator_writes_frames_pages_and_led_changes() {
    let dir = std::env::temp_dir().join(format!("pitap-sim-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut sim = Simulator::open(dir.clone()).unwrap();
    let mut model = StatusModel::default();
    let view = model.update(0, &tap_state(0, 0), 1000);
    sim.set_leds(view.leds.lit(0), view.leds.patterns());
    sim.set_leds(view.leds.lit(0), view.leds.patterns()); // unchanged: not logged again
    sim.set_leds(view.leds.lit(150), view.leds.patterns());
    sim.show(view.page, &view.lines);
    let log = std::fs::read_to_string(dir.join("leds.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 2, "{log}");
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first["patterns"]["power"], "heartbeat");
    assert_eq!(
        first["lit"]["link_a"], true,
        "carrier without traffic: steady on"
    );
    let page: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("page.json")).unwrap()).unwrap();
    assert_eq!(page["page"], "overview");
    let shown = Framebuffer::from_png(&std::fs::read(dir.join("display.png")).unwrap()).unwrap();
    let mut expected = Framebuffer::default();
    let Ok(()) = draw(&mut expected, view.page, &view.lines);
    assert_eq!(shown.diff(&expected), 0);
    assert!(dir.join("frame-00000.png").exists());
    // The button file is the simulator's button.
    assert_eq!(sim.button_held(), Some(false));
    std::fs::write(dir.join("button"), "down").unwrap();
    assert_eq!(sim.button_held(), Some(true));
    let _ = std::fs::remove_dir_all(dir);
}
