//! The README's table of LED patterns and its display frames against the
//! code: every blink period the status logic uses is in the table, with
//! the packet rates `traffic_blink` gives it, and every page's golden frame
//! is shown.

use pitapd::status::logic::traffic_blink;
use pitapd::status::pages::Page;
use pitapd::status::state::LedPattern;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap()
}

#[test]
fn the_led_table_has_every_traffic_rate() {
    let text = readme();
    let table: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("| link A / link B |"))
        .collect();
    assert!(!table.is_empty());
    // The lowest rate of each band, and the band's period in the table.
    for (pps, words) in [
        (0, "| on |"),
        (1, "1 to 9 packets/s"),
        (10, "10 to 99 packets/s"),
        (100, "100 to 999 packets/s"),
        (1_000, "1,000 to 9,999 packets/s"),
        (10_000, "10,000 packets/s or more"),
    ] {
        let row = table
            .iter()
            .find(|l| l.contains(words))
            .unwrap_or_else(|| panic!("no row for {words}"));
        match traffic_blink(pps) {
            LedPattern::Blink { period_ms } => {
                assert!(
                    row.contains(&format!("blink {period_ms} ms")),
                    "{pps}: {row}"
                )
            }
            LedPattern::On => assert!(row.contains("| on |"), "{row}"),
            other => panic!("{other:?}"),
        }
        // The band ends where the next period starts.
        if pps > 0 {
            assert_eq!(traffic_blink(pps * 10 - 1), traffic_blink(pps), "{pps}");
        }
    }
    for led in ["power", "uplink", "alert"] {
        assert!(text.contains(&format!("| {led} |")), "{led}");
    }
}

#[test]
fn every_display_page_is_shown() {
    let text = readme();
    let mut page = Page::Overview;
    for _ in 0..4 {
        let frame = format!("firmware/pitapd/tests/golden/{}.png", page.name());
        assert!(text.contains(&format!("({frame})")), "{frame}");
        page = page.next();
    }
    let identity = format!("firmware/pitapd/tests/golden/{}.png", Page::Identity.name());
    assert!(text.contains(&identity));
}
