//! A/B updates end to end on a live tap in namespaces: `pitap update`
//! offers an image through the running collector, the tap pulls it over
//! the sealed uplink (with loss on it, and the collector killed and
//! restarted in the middle), writes the trial partition, and reboots with
//! the tryboot flag; the trial boot commits once healthy and acknowledged,
//! or reboots back by itself; a forged manifest, a damaged image and a
//! transfer cut short never get a reboot.
//!
//! The card is files (its partitions and autoboot.txt); the boot
//! firmware's answer to "which partition, tryboot or not" is the kernel
//! command line the test writes, as the emulator's boot harness does.
//! pitapd runs as the init of a PID namespace of its own, so its reboot(2)
//! is real and ends only that namespace (its init dies of SIGHUP, which
//! the test sees). Root only.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::netns::*;

const PART_BYTES: u64 = 4 << 20;
const IMAGE_BYTES: usize = (1 << 20) + 777;
const LISTEN: &str = "127.0.0.1:47410";

struct Card {
    dir: PathBuf,
}

impl Card {
    fn new(dir: &Path) -> Card {
        let card = Card {
            dir: dir.join("card"),
        };
        std::fs::create_dir_all(&card.dir).unwrap();
        // The running image on partition 2; partition 3 empty.
        std::fs::write(card.part(2), pattern(PART_BYTES as usize, 2)).unwrap();
        std::fs::write(card.part(3), vec![0u8; PART_BYTES as usize]).unwrap();
        std::fs::write(
            card.autoboot(),
            "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n",
        )
        .unwrap();
        card.boot(2, false);
        card
    }

    fn part(&self, n: u8) -> PathBuf {
        self.dir.join(format!("part{n}.img"))
    }

    fn autoboot(&self) -> PathBuf {
        self.dir.join("autoboot.txt")
    }

    fn cmdline(&self) -> PathBuf {
        self.dir.join("cmdline")
    }

    /// What the boot firmware (here: the harness) says of the next boot.
    fn boot(&self, partition: u8, tryboot: bool) {
        std::fs::write(
            self.cmdline(),
            format!(
                "console=ttyAMA0 pitap.boot_partition={partition} pitap.tryboot={}\n",
                u8::from(tryboot)
            ),
        )
        .unwrap();
    }

    fn autoboot_text(&self) -> String {
        std::fs::read_to_string(self.autoboot()).unwrap()
    }

    fn holds(&self, n: u8, image: &[u8]) -> bool {
        let bytes = std::fs::read(self.part(n)).unwrap();
        &bytes[..image.len()] == image
    }
}

/// Deterministic bytes that differ by seed (no two images alike).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An image that deflates to about a third, as a kernel does: the collector
/// sends it deflated.
fn compressible(len: usize, seed: u64) -> Vec<u8> {
    let noise = pattern(len, seed);
    (0..len)
        .map(|i| {
            if i % 4096 < 1024 {
                noise[i]
            } else {
                b"kernel image "[i % 13]
            }
        })
        .collect()
}

fn pitap(args: &[&str]) -> std::process::Output {
    std::process::Command::new(sibling_binary("pitap"))
        .args(args)
        .output()
        .expect("run pitap")
}

/// A new update key in `dir` (update.key); its public half.
fn update_key(dir: &Path) -> (PathBuf, String) {
    let out = pitap(&["keygen", "--update", "--out-dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let path = dir.join("update.key");
    let text = std::fs::read_to_string(&path).unwrap();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("public = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("public key in update.key")
        .to_string();
    (path, public)
}

fn tap_config(topo: &Topology, card: &Card, public: &str, trial_s: u32) -> PathBuf {
    topo.pitapd_config(
        "",
        &format!(
            "{}\n[update]\nkey = \"{public}\"\nautoboot = \"{}\"\nremount = \"\"\n\
             partitions = \"{}\"\ntrial_s = {trial_s}\nbootloader = \"{}\"\ncmdline = \"{}\"\n",
            topo.uplink(LISTEN, ""),
            card.autoboot().display(),
            card.dir.join("part{n}.img").display(),
            card.dir.join("no-device-tree").display(),
            card.cmdline().display(),
        ),
    )
}

/// pitapd as the init of a PID namespace of its own: its reboot ends the
/// namespace, not the machine.
fn boot_tap(topo: &mut Topology, config: &Path, name: &str) -> usize {
    let bin = env!("CARGO_BIN_EXE_pitapd");
    let tap = topo.tap.clone();
    let child = topo.spawn(
        &tap,
        name,
        &[
            "unshare",
            "--pid",
            "--fork",
            "--kill-child",
            bin,
            "--config",
            config.to_str().unwrap(),
        ],
    );
    topo.wait_for_stderr(name, "pitapd: tapping", Duration::from_secs(10));
    child
}

/// Waits until the tap reboots (its namespace's init killed by SIGHUP, as
/// reboot(2) in a PID namespace does).
fn wait_reboot(topo: &mut Topology, child: usize, name: &str, limit: Duration) {
    let status = topo.wait_exit(child, limit);
    assert_eq!(
        status.signal(),
        Some(libc_sighup()),
        "{name} ended with {status:?}, not by a reboot: {}",
        topo.errors(name)
    );
}

fn libc_sighup() -> i32 {
    1
}

/// Stops the tap cleanly: SIGTERM to pitapd, the init inside the PID
/// namespace (unshare, outside, ignores it and waits); how it ended.
fn stop_tap(topo: &mut Topology, child: usize) -> std::process::ExitStatus {
    let outer = topo.pid(child);
    let children =
        std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children")).unwrap_or_default();
    for pid in children.split_whitespace() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", pid])
            .status();
    }
    topo.wait_exit(child, Duration::from_secs(20))
}

/// `pitap update`; an empty `version` leaves the name to pitap.
fn offer(topo: &Topology, key: &Path, image: &Path, version: &str) {
    let store = topo.store_path();
    let mut args = vec![
        "update",
        "--store",
        store.to_str().unwrap(),
        "--tap",
        "nstap",
        "--key",
        key.to_str().unwrap(),
        image.to_str().unwrap(),
    ];
    if !version.is_empty() {
        args.extend(["--version", version]);
    }
    let out = pitap(&args);
    assert!(
        out.status.success(),
        "pitap update: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The offer's state in the store, and the tap's last update status.
fn store_state(topo: &Topology) -> (String, String) {
    let conn = rusqlite::Connection::open(topo.store_path()).unwrap();
    let offer: String = conn
        .query_row(
            "SELECT state || ':' || detail FROM updates ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap_or_default();
    let tap: String = conn
        .query_row(
            "SELECT state || ':' || have || '/' || total FROM update_status WHERE tap = 'nstap'",
            [],
            |r| r.get(0),
        )
        .unwrap_or_default();
    (offer, tap)
}

fn wait_store(
    topo: &Topology,
    what: &str,
    limit: Duration,
    ok: impl Fn(&(String, String)) -> bool,
) {
    let start = Instant::now();
    loop {
        let s = store_state(topo);
        if ok(&s) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{what}: the store says {s:?} after {limit:?}; collector: {}",
            topo.errors("collector")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn collector(topo: &mut Topology, name: &str) -> usize {
    let tap = topo.tap.clone();
    let out = topo.dir.join(format!("{name}.jsonl"));
    topo.start_collector(&tap, name, LISTEN, &["--output", out.to_str().unwrap()])
}

/// Loss both ways on the uplink (nftables in the tap's namespace).
fn lossy_uplink(topo: &Topology, percent: u32) {
    let port = LISTEN.rsplit(':').next().unwrap();
    let odds = if percent >= 100 {
        String::new()
    } else {
        format!("numgen random mod 100 < {percent} ")
    };
    let rules = format!(
        "table inet loss {{\n chain out {{\n  type filter hook output priority 0;\n  \
         udp dport {port} {odds}drop\n  \
         udp sport {port} {odds}drop\n }}\n}}\n"
    );
    let file = topo.dir.join("loss.nft");
    std::fs::write(&file, rules).unwrap();
    topo.run(&topo.tap.clone(), &["nft", "-f", file.to_str().unwrap()]);
}

fn no_loss(topo: &Topology) {
    topo.run(
        &topo.tap.clone(),
        &["nft", "delete", "table", "inet", "loss"],
    );
}

#[test]
fn a_good_update_is_pulled_through_loss_and_a_collector_restart_tried_and_committed() {
    let mut topo = Topology::new("upd");
    let card = Card::new(&topo.dir);
    let (key, public) = update_key(&topo.dir);
    let image = compressible(IMAGE_BYTES, 3);
    let image_path = topo.dir.join("new.img");
    std::fs::write(&image_path, &image).unwrap();
    let old = std::fs::read(card.part(2)).unwrap();
    let autoboot_before = card.autoboot_text();

    let mut coll = collector(&mut topo, "collector");
    let config = tap_config(&topo, &card, &public, 60);
    let tap = boot_tap(&mut topo, &config, "pitapd");
    lossy_uplink(&topo, 10);
    offer(&topo, &key, &image_path, "9.9.9-test");
    // Under way: the collector is killed and started again; the tap goes
    // on from what its partition has.
    wait_store(
        &topo,
        "transfer under way",
        Duration::from_secs(30),
        |(_, t)| t.starts_with("receiving:") && !t.starts_with("receiving:0/"),
    );
    topo.signal(coll, "KILL");
    topo.wait_exit(coll, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(1500));
    coll = collector(&mut topo, "collector2");
    wait_reboot(&mut topo, tap, "pitapd", Duration::from_secs(90));
    let said = topo.errors("pitapd");
    assert!(said.contains("rebooting with \"0 tryboot\""), "{said}");
    assert!(
        topo.errors("collector2")
            .contains(" to send deflated) to tap nstap"),
        "{}",
        topo.errors("collector2")
    );
    assert!(said.contains("written and read back"), "{said}");
    assert!(card.holds(3, &image), "partition 3 does not hold the image");
    assert_eq!(
        std::fs::read(card.part(2)).unwrap(),
        old,
        "partition 2 changed"
    );
    assert_eq!(
        card.autoboot_text(),
        autoboot_before,
        "autoboot.txt changed before the trial"
    );
    no_loss(&topo);

    // The trial boot: healthy and acknowledged, it commits.
    card.boot(3, true);
    let trial = boot_tap(&mut topo, &config, "trial");
    topo.wait_for_stderr("trial", "committed", Duration::from_secs(30));
    assert_eq!(
        card.autoboot_text(),
        "[all]\ntryboot_a_b=1\nboot_partition=3\n[tryboot]\nboot_partition=2\n"
    );
    wait_store(
        &topo,
        "the offer done",
        Duration::from_secs(20),
        |(o, _)| o.starts_with("done:"),
    );
    let list = pitap(&[
        "update",
        "--list",
        "--store",
        topo.store_path().to_str().unwrap(),
    ]);
    let list = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(list.contains("from partition 3: committed"), "{list}");
    assert!(list.contains("9.9.9-test for tap nstap"), "{list}");
    assert!(stop_tap(&mut topo, trial).success());

    // The next (normal) boot runs partition 3 and takes nothing new.
    card.boot(3, false);
    let next = boot_tap(&mut topo, &config, "next");
    std::thread::sleep(Duration::from_secs(3));
    let status = topo.status();
    assert_eq!(status["update"]["partition"], 3, "{status}");
    assert_eq!(status["update"]["state"], "idle", "{status}");
    assert!(stop_tap(&mut topo, next).success());
    topo.signal(coll, "TERM");
}

#[test]
fn a_trial_never_acknowledged_reboots_into_the_old_partition() {
    let mut topo = Topology::new("updrb");
    let card = Card::new(&topo.dir);
    let (key, public) = update_key(&topo.dir);
    let image = pattern(IMAGE_BYTES / 4, 5);
    let image_path = topo.dir.join("new.img");
    std::fs::write(&image_path, &image).unwrap();
    let autoboot_before = card.autoboot_text();
    let coll = collector(&mut topo, "collector");
    let config = tap_config(&topo, &card, &public, 10);
    let tap = boot_tap(&mut topo, &config, "pitapd");
    // Named by its digest.
    offer(&topo, &key, &image_path, "");
    let list = pitap(&[
        "update",
        "--list",
        "--store",
        topo.store_path().to_str().unwrap(),
    ]);
    let digest: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&image)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let name = format!("sha256-{}", &digest[..12]);
    assert!(
        String::from_utf8_lossy(&list.stdout).contains(&format!("{name} for tap nstap")),
        "{list:?}"
    );
    wait_reboot(&mut topo, tap, "pitapd", Duration::from_secs(60));
    assert!(card.holds(3, &image));

    // The trial boot never reaches the collector (every uplink datagram
    // lost): not acknowledged, so it reboots by itself, without tryboot,
    // and autoboot.txt still boots partition 2.
    lossy_uplink(&topo, 100);
    card.boot(3, true);
    let start = Instant::now();
    let trial = boot_tap(&mut topo, &config, "trial");
    wait_reboot(&mut topo, trial, "trial", Duration::from_secs(30));
    let waited = start.elapsed();
    let said = topo.errors("trial");
    assert!(said.contains("rebooting into the old partition"), "{said}");
    assert!(
        said.contains("pitapd: rebooting\n"),
        "a plain reboot: {said}"
    );
    assert!(!said.contains("committed"), "{said}");
    assert!(
        waited >= Duration::from_secs(10),
        "rolled back after {waited:?}, before the trial time"
    );
    assert_eq!(card.autoboot_text(), autoboot_before);
    no_loss(&topo);

    // Back on partition 2, the collector sees the trial failed and stops
    // offering it: no second download, no second reboot.
    card.boot(2, false);
    let back = boot_tap(&mut topo, &config, "back");
    wait_store(
        &topo,
        "the offer rolled back",
        Duration::from_secs(20),
        |(o, _)| o.starts_with("rolled back:"),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !topo.errors("back").contains("offered: writing"),
        "{}",
        topo.errors("back")
    );
    assert!(stop_tap(&mut topo, back).success());
    topo.signal(coll, "TERM");
}

#[test]
fn a_forged_manifest_a_damaged_image_and_a_short_transfer_never_reboot() {
    let mut topo = Topology::new("updno");
    let card = Card::new(&topo.dir);
    let (key, public) = update_key(&topo.dir);
    let other_dir = topo.dir.join("other");
    let (other_key, _) = update_key(&other_dir);
    let image = pattern(IMAGE_BYTES / 4, 7);
    let image_path = topo.dir.join("new.img");
    std::fs::write(&image_path, &image).unwrap();
    let coll = collector(&mut topo, "collector");
    let config = tap_config(&topo, &card, &public, 60);
    let tap = boot_tap(&mut topo, &config, "pitapd");

    // Signed with a key the tap does not trust: refused before a byte.
    offer(&topo, &other_key, &image_path, "9.9.9-forged");
    wait_store(
        &topo,
        "forged refused",
        Duration::from_secs(20),
        |(o, _)| o.starts_with("refused:manifest: signature does not verify"),
    );

    // The store's image damaged after signing (while no collector runs,
    // so none reads it before): written, refused at the end.
    topo.signal(coll, "TERM");
    topo.wait_exit(coll, Duration::from_secs(20));
    offer(&topo, &key, &image_path, "9.9.9-damaged");
    {
        let conn = rusqlite::Connection::open(topo.store_path()).unwrap();
        let mut damaged = image.clone();
        damaged[IMAGE_BYTES / 8] ^= 0x40;
        conn.execute(
            "UPDATE updates SET stream = ?1 WHERE version = '9.9.9-damaged'",
            [&damaged],
        )
        .unwrap();
    }
    let coll = collector(&mut topo, "collector2");
    wait_store(
        &topo,
        "damaged refused",
        Duration::from_secs(30),
        |(o, _)| o.starts_with("refused:image: SHA-256 differs"),
    );

    // Cut short (the store holds less than the manifest says): the stream
    // ends before the image does, refused.
    topo.signal(coll, "TERM");
    topo.wait_exit(coll, Duration::from_secs(20));
    offer(&topo, &key, &image_path, "9.9.9-short");
    {
        let conn = rusqlite::Connection::open(topo.store_path()).unwrap();
        conn.execute(
            "UPDATE updates SET stream = ?1 WHERE version = '9.9.9-short'",
            [&image[..image.len() / 2]],
        )
        .unwrap();
    }
    let coll = collector(&mut topo, "collector3");
    let ended = format!(
        "refused:image: the transfer ended after {} of {} bytes",
        image.len() / 2,
        image.len()
    );
    wait_store(&topo, "short refused", Duration::from_secs(30), |(o, _)| {
        *o == ended
    });

    // Stuck (every datagram with image bytes lost on the way): the tap
    // waits and asks again; withdrawn, it stops.
    let port = LISTEN.rsplit(':').next().unwrap();
    let rules = format!(
        "table inet big {{\n chain out {{\n  type filter hook output priority 0;\n  \
         udp sport {port} meta length > 600 drop\n }}\n}}\n"
    );
    let file = topo.dir.join("big.nft");
    std::fs::write(&file, rules).unwrap();
    topo.run(&topo.tap.clone(), &["nft", "-f", file.to_str().unwrap()]);
    offer(&topo, &key, &image_path, "9.9.9-stuck");
    wait_store(
        &topo,
        "stuck receiving",
        Duration::from_secs(20),
        |(_, t)| t.starts_with("receiving:0/"),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(store_state(&topo).1.starts_with("receiving:0/"));
    let out = pitap(&[
        "update",
        "--cancel",
        "--tap",
        "nstap",
        "--store",
        topo.store_path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    topo.wait_for_stderr("pitapd", "withdrawn", Duration::from_secs(10));
    let said = topo.errors("pitapd");
    assert!(!said.contains("rebooting"), "{said}");
    assert_eq!(
        card.autoboot_text(),
        "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n"
    );
    // Still tapping, never rebooted.
    let status = stop_tap(&mut topo, tap);
    assert!(status.success(), "{status:?}: {said}");
    topo.signal(coll, "TERM");
}
