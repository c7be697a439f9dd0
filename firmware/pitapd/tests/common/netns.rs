//! A test network: namespaces `client` — `tap` — `server` joined by veth
//! pairs, with `pitapd` bridging the tap's two ports. Everything lives in
//! namespaces made here, and everything is removed when the `Topology` is
//! dropped, also when the test fails (processes in the namespaces are killed
//! first).
//!
//! ```text
//!  client ns            tap ns                       server ns
//!  eth0 192.0.2.1 ── porta [br0] portb ── eth0 192.0.2.2
//! ```
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const CLIENT_IP: &str = "192.0.2.1";
pub const SERVER_IP: &str = "192.0.2.2";
pub const TAP_IP: &str = "192.0.2.3";

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub struct Topology {
    pub client: String,
    pub tap: String,
    pub server: String,
    pub dir: PathBuf,
    /// The tap's uplink key (hex), fresh for every topology.
    pub key: String,
    children: Vec<Child>,
}

fn random_key_hex() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("/dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The path of a binary built beside `pitapd` (`pitap`, the collector).
pub fn sibling_binary(name: &str) -> PathBuf {
    let pitapd = PathBuf::from(env!("CARGO_BIN_EXE_pitapd"));
    let bin = pitapd.with_file_name(name);
    assert!(
        bin.exists(),
        "{} missing: build the workspace",
        bin.display()
    );
    bin
}

impl Topology {
    pub fn new(tag: &str) -> Topology {
        // Namespaces, bridges and AF_PACKET need root.
        let uid = Command::new("id").arg("-u").output().expect("id -u");
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "the namespace tests need root (CI has it; run scripts/test.sh as root)"
        );
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let base = format!("pt{}{}{}", std::process::id() % 100_000, tag, n);
        let topo = Topology {
            client: format!("{base}c"),
            tap: format!("{base}t"),
            server: format!("{base}s"),
            dir: std::env::temp_dir().join(format!("pitap-netns-{base}")),
            key: random_key_hex(),
            children: Vec::new(),
        };
        let _ = std::fs::remove_dir_all(&topo.dir);
        std::fs::create_dir_all(&topo.dir).expect("temp dir");
        for ns in [&topo.client, &topo.tap, &topo.server] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "link",
            "add",
            "eth0",
            "netns",
            &topo.client,
            "type",
            "veth",
            "peer",
            "name",
            "porta",
            "netns",
            &topo.tap,
        ]);
        ip(&[
            "link",
            "add",
            "eth0",
            "netns",
            &topo.server,
            "type",
            "veth",
            "peer",
            "name",
            "portb",
            "netns",
            &topo.tap,
        ]);
        for (ns, addr) in [(&topo.client, CLIENT_IP), (&topo.server, SERVER_IP)] {
            // Quiet hosts: no IPv6 chatter, wire-sized frames in captures.
            topo.run(ns, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
            topo.run(
                ns,
                &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
            );
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", ns, "link", "set", "eth0", "up"]);
            topo.run(
                ns,
                &[
                    "ethtool", "-K", "eth0", "tso", "off", "gso", "off", "gro", "off", "tx", "off",
                ],
            );
        }
        topo
    }

    /// Runs a command in a namespace and returns its output (it must succeed).
    pub fn run(&self, ns: &str, args: &[&str]) -> Output {
        let out = self.try_run(ns, args);
        assert!(
            out.status.success(),
            "{args:?} in {ns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn try_run(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{args:?} in {ns}: {e}"))
    }

    /// Starts a command in a namespace, stdout and stderr to files in the
    /// topology's directory; returns the index of the process.
    pub fn spawn(&mut self, ns: &str, name: &str, args: &[&str]) -> usize {
        let out = std::fs::File::create(self.dir.join(format!("{name}.out"))).unwrap();
        let err = std::fs::File::create(self.dir.join(format!("{name}.err"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{args:?} in {ns}: {e}"));
        self.children.push(child);
        self.children.len() - 1
    }

    pub fn pid(&self, child: usize) -> u32 {
        self.children[child].id()
    }

    pub fn signal(&self, child: usize, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid(child).to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// Waits for a process to end, at most `limit`; its exit success.
    pub fn wait(&mut self, child: usize, limit: Duration) -> bool {
        let start = Instant::now();
        loop {
            if let Some(status) = self.children[child].try_wait().unwrap() {
                return status.success();
            }
            assert!(
                start.elapsed() < limit,
                "process {child} still running after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a process to end, at most `limit`; how it ended.
    pub fn wait_exit(&mut self, child: usize, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.children[child].try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "process {child} still running after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn output(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.out"))).unwrap_or_default()
    }

    pub fn errors(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.err"))).unwrap_or_default()
    }

    /// Waits until a process's stderr contains `text`.
    pub fn wait_for_stderr(&self, name: &str, text: &str, limit: Duration) {
        let start = Instant::now();
        while !self.errors(name).contains(text) {
            assert!(
                start.elapsed() < limit,
                "{name} did not say {text:?} within {limit:?}; it said {:?}",
                self.errors(name)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes a pitapd configuration for this topology and returns its path.
    pub fn pitapd_config(&self, extra_tap: &str, rest: &str) -> PathBuf {
        let path = self.dir.join("pitap.toml");
        let text = format!(
            "[tap]\nid = \"nstap\"\nport_a = \"porta\"\nport_b = \"portb\"\nbridge = \"br0\"\n\
             status_file = \"{}\"\n{extra_tap}\n{rest}\n",
            self.status_path().display()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The `[uplink]` section for a collector at `collector`, with the
    /// topology's key; `extra` lines are appended to the section.
    pub fn uplink(&self, collector: &str, extra: &str) -> String {
        format!(
            "[uplink]\ncollector = \"{collector}\"\nkey = \"{}\"\nflush_interval_ms = 200\n{extra}\n",
            self.key
        )
    }

    /// A collector configuration that knows the tap "nstap" by its key.
    pub fn collector_config(&self) -> PathBuf {
        let path = self.dir.join("collector.toml");
        std::fs::write(&path, format!("[taps.nstap]\nkey = \"{}\"\n", self.key)).unwrap();
        path
    }

    /// Starts `pitap collect` in a namespace under `name` (stdout, stderr
    /// to files of that name), JSON lines, and waits until it listens.
    pub fn start_collector(&mut self, ns: &str, name: &str, listen: &str, extra: &[&str]) -> usize {
        let pitap = sibling_binary("pitap");
        let config = self.collector_config();
        let mut args = vec![
            pitap.to_str().unwrap().to_string(),
            "collect".into(),
            "--config".into(),
            config.to_str().unwrap().to_string(),
            "--listen".into(),
            listen.into(),
            "--format".into(),
            "json".into(),
            "--store".into(),
            self.store_path().to_str().unwrap().to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ns = ns.to_string();
        let child = self.spawn(&ns, name, &args);
        self.wait_for_stderr(name, "collecting on", Duration::from_secs(10));
        child
    }

    /// SIGTERM to pitapd (which flushes and says goodbye), then the JSON
    /// lines of the collector started as "collector" once it exits.
    pub fn stop_and_collect(&mut self, pitapd: usize, collector: usize) -> Vec<serde_json::Value> {
        self.signal(pitapd, "TERM");
        assert!(
            self.wait(pitapd, Duration::from_secs(20)),
            "pitapd: {}",
            self.errors("pitapd")
        );
        assert!(
            self.wait(collector, Duration::from_secs(30)),
            "collector: {}",
            self.errors("collector")
        );
        self.output("collector")
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    }

    /// The collectors' flow store (one per topology: a restarted collector
    /// goes on with it).
    pub fn store_path(&self) -> PathBuf {
        self.dir.join("flows.db")
    }

    pub fn status_path(&self) -> PathBuf {
        self.dir.join("status.json")
    }

    pub fn status(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.status_path()).expect("status file");
        serde_json::from_str(&text).expect("status JSON")
    }

    /// Starts pitapd in the tap namespace and waits until it taps.
    pub fn start_pitapd(&mut self, config: &Path, extra: &[&str]) -> usize {
        let bin = env!("CARGO_BIN_EXE_pitapd");
        let config = config.to_str().unwrap().to_string();
        let mut args = vec![bin, "--config", config.as_str()];
        args.extend_from_slice(extra);
        let tap = self.tap.clone();
        let child = self.spawn(&tap, "pitapd", &args);
        self.wait_for_stderr("pitapd", "pitapd: tapping", Duration::from_secs(10));
        child
    }

    /// Starts tcpdump on a tap port, writing `file`, and waits until it listens.
    pub fn start_capture(&mut self, port: &str, file: &Path) -> usize {
        let tap = self.tap.clone();
        let child = self.spawn(
            &tap,
            "tcpdump",
            // A 64 MiB buffer: the ground truth must not drop what it saw.
            // Immediate mode: no frame waits in a half-full ring block when
            // the capture stops.
            &[
                "tcpdump",
                "-Z",
                "root",
                "--immediate-mode",
                "-B",
                "65536",
                "-n",
                "-i",
                port,
                "-w",
                file.to_str().unwrap(),
            ],
        );
        self.wait_for_stderr("tcpdump", "listening on", Duration::from_secs(10));
        child
    }

    /// Stops a capture started with `start_capture` and checks that it lost
    /// nothing (a dropping ground truth would make every comparison moot).
    pub fn stop_capture(&mut self, child: usize) {
        self.signal(child, "INT");
        assert!(self.wait(child, Duration::from_secs(10)), "tcpdump failed");
        let report = self.errors("tcpdump");
        let count = |what: &str| {
            report
                .lines()
                .find(|l| l.ends_with(what))
                .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("tcpdump did not report {what:?}: {report}"))
        };
        assert_eq!(count("packets dropped by kernel"), 0, "{report}");
        assert_eq!(
            count("packets captured"),
            count("packets received by filter"),
            "{report}"
        );
    }

    /// Reads the first line a process printed on stderr (e.g. an address).
    pub fn first_stderr_line(&self, name: &str, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let file = std::fs::File::open(self.dir.join(format!("{name}.err"))).unwrap();
            let mut line = String::new();
            if BufReader::new(file).read_line(&mut line).unwrap() > 0 && line.ends_with('\n') {
                return line.trim().to_string();
            }
            assert!(start.elapsed() < limit, "{name} printed nothing");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.client, &self.tap, &self.server] {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.client, &self.tap, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
