//! The bypass board's netlist (hardware/bypass/bypass.net) read back: with
//! every relay released, each pin of jack A reaches the same pin of jack B
//! and nothing else; energized, each jack reaches its own Pi port and not
//! the other jack. The coils hang between +5 V and the MOSFET with a
//! flyback diode each, and the trigger is on the header pin of the GPIO
//! the shipped pin map names. The netlist and schematic are what gen.py
//! makes.

mod common;

use std::collections::HashMap;
use std::path::Path;

const RELAYS: [&str; 8] = ["K1", "K2", "K3", "K4", "K5", "K6", "K7", "K8"];

fn board_dir() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../hardware/bypass"
    ))
}

/// Net name -> its nodes ("REF.PIN"), from the s-expression netlist.
fn nets() -> HashMap<String, Vec<String>> {
    let text = std::fs::read_to_string(board_dir().join("bypass.net")).unwrap();
    let quoted = |s: &str, key: &str| -> Option<String> {
        let start = s.find(key)? + key.len();
        let end = s[start..].find('"')?;
        Some(s[start..start + end].to_string())
    };
    let mut nets = HashMap::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("(net "))
    {
        let name = quoted(line, "(name \"").unwrap();
        let nodes = line
            .split("(node ")
            .skip(1)
            .map(|n| {
                format!(
                    "{}.{}",
                    quoted(n, "(ref \"").unwrap(),
                    quoted(n, "(pin \"").unwrap()
                )
            })
            .collect();
        nets.insert(name, nodes);
    }
    nets
}

/// Which nodes are joined, by the nets and the relays' closed contacts.
struct Board {
    parent: HashMap<String, String>,
}

impl Board {
    fn new(energized: bool) -> Board {
        let mut b = Board {
            parent: HashMap::new(),
        };
        for nodes in nets().values() {
            for n in &nodes[1..] {
                b.join(&nodes[0], n);
            }
        }
        for k in RELAYS {
            for c in 1..=2 {
                let thrown = if energized { "NO" } else { "NC" };
                b.join(&format!("{k}.COM{c}"), &format!("{k}.{thrown}{c}"));
            }
        }
        b
    }

    fn root(&mut self, n: &str) -> String {
        let p = self.parent.get(n).cloned().unwrap_or_else(|| n.to_string());
        if p == n {
            return p;
        }
        let r = self.root(&p);
        self.parent.insert(n.to_string(), r.clone());
        r
    }

    fn join(&mut self, a: &str, b: &str) {
        let (ra, rb) = (self.root(a), self.root(b));
        if ra != rb {
            self.parent.insert(ra, rb);
        }
    }

    fn joined(&mut self, a: &str, b: &str) -> bool {
        self.root(a) == self.root(b)
    }
}

/// Pins of the four RJ45 jacks.
fn jack_pins() -> Vec<String> {
    ["J1", "J2", "J3", "J4"]
        .iter()
        .flat_map(|j| (1..=8).map(move |p| format!("{j}.{p}")))
        .collect()
}

/// Which jack pins `pin` reaches, itself left out.
fn reaches(board: &mut Board, pin: &str) -> Vec<String> {
    jack_pins()
        .into_iter()
        .filter(|p| p != pin && board.joined(pin, p))
        .collect()
}

#[test]
fn released_relays_join_the_jacks_and_energized_ones_insert_the_pi() {
    let mut released = Board::new(false);
    let mut energized = Board::new(true);
    for p in 1..=8 {
        assert_eq!(
            reaches(&mut released, &format!("J1.{p}")),
            [format!("J2.{p}")],
            "released: J1.{p}"
        );
        assert_eq!(
            reaches(&mut released, &format!("J3.{p}")),
            Vec::<String>::new()
        );
        assert_eq!(
            reaches(&mut energized, &format!("J1.{p}")),
            [format!("J3.{p}")],
            "energized: J1.{p}"
        );
        assert_eq!(
            reaches(&mut energized, &format!("J2.{p}")),
            [format!("J4.{p}")],
            "energized: J2.{p}"
        );
    }
}

#[test]
fn each_coil_has_its_flyback_diode_on_the_driver() {
    let mut b = Board::new(false);
    for (i, k) in RELAYS.iter().enumerate() {
        let d = format!("D{}", i + 1);
        assert!(b.joined(&format!("{k}.COIL+"), "J5.2"), "{k} coil on +5V");
        assert!(b.joined(&format!("{k}.COIL-"), "Q1.D"), "{k} coil on Q1");
        assert!(
            b.joined(&format!("{d}.K"), &format!("{k}.COIL+")),
            "{d} cathode"
        );
        assert!(
            b.joined(&format!("{d}.A"), &format!("{k}.COIL-")),
            "{d} anode"
        );
    }
    assert!(b.joined("Q1.S", "J5.39"), "Q1 source on GND");
    assert!(
        b.joined("Q1.G", "R4.1") && b.joined("R4.2", "J5.39"),
        "gate pull-down"
    );
    assert!(b.joined("U1.Q", "R3.1") && b.joined("R3.2", "Q1.G"));
    assert!(
        !b.joined("J5.2", "J5.39") && !b.joined("J5.1", "J5.2"),
        "rails apart"
    );
}

/// BCM GPIO -> physical pin of the 40-pin header.
const HEADER: [(u32, u32); 26] = [
    (2, 3),
    (3, 5),
    (4, 7),
    (14, 8),
    (15, 10),
    (17, 11),
    (18, 12),
    (27, 13),
    (22, 15),
    (23, 16),
    (24, 18),
    (10, 19),
    (9, 21),
    (25, 22),
    (11, 23),
    (8, 24),
    (7, 26),
    (0, 27),
    (1, 28),
    (5, 29),
    (6, 31),
    (12, 32),
    (13, 33),
    (19, 35),
    (16, 36),
    (26, 37),
];

#[test]
fn the_trigger_is_on_the_pin_the_pin_map_names() {
    let section = common::shipped_bypass_section();
    let line: u32 = section
        .lines()
        .find_map(|l| l.strip_prefix("line = "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("bypass.line");
    let pin = HEADER
        .iter()
        .find(|(gpio, _)| *gpio == line)
        .map(|(_, pin)| *pin)
        .expect("a header GPIO");
    // Pulled low at reset (BCM GPIO 9-27), so a booting Pi makes no edge.
    assert!(
        (9..=27).contains(&line),
        "GPIO{line} is pulled high at reset"
    );
    let mut b = Board::new(false);
    assert!(
        b.joined(&format!("J5.{pin}"), "U1.B"),
        "GPIO{line} (pin {pin}) to U1.B"
    );
    assert!(
        b.joined("U1.B", "R1.1") && b.joined("R1.2", "J5.39"),
        "TRIG pull-down"
    );
    // The other status pins are not on the board's nets.
    let map = common::shipped_pinmap();
    for used in [17u32, 27, 22, 23, 24, 25] {
        assert!(map.contains(&format!("line = {used}")));
        let p = HEADER.iter().find(|(g, _)| *g == used).unwrap().1;
        assert!(!b.joined(&format!("J5.{p}"), "U1.B"));
    }
}

#[test]
fn the_netlist_and_schematic_are_what_gen_py_makes() {
    let out = std::process::Command::new("python3")
        .arg(board_dir().join("gen.py"))
        .arg("--check")
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
