//! `pitapd --read` from standard input (`-`) and from gzip'd captures gives
//! the lines the plain file gives; a usage error is one line and a hint,
//! not the whole usage.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

fn lines_of(args: &[&str], stdin: Option<&[u8]>) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pitapd"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn stdin_and_gzip_read_like_the_file() {
    let dir = temp_dir("read-inputs");
    for name in ["zeek__wikipedia.pcap", "tcpdump__tcp-handshake-nano.pcap"] {
        let file = real_pcap(name);
        let path = file.to_str().unwrap();
        let plain = lines_of(&["--read", path, "--print", "--format", "json", "-q"], None);
        assert!(plain.lines().count() > 0, "{name}");
        let bytes = std::fs::read(&file).unwrap();
        let piped = lines_of(
            &["--read", "-", "--print", "--format", "json", "-q"],
            Some(&bytes),
        );
        assert_eq!(piped, plain, "{name} from stdin");
        let gz = dir.join(format!("{name}.gz"));
        let out = Command::new("gzip").arg("-c").arg(&file).output().unwrap();
        assert!(out.status.success());
        std::fs::write(&gz, &out.stdout).unwrap();
        let gzipped = lines_of(
            &[
                "--read",
                gz.to_str().unwrap(),
                "--print",
                "--format",
                "json",
                "-q",
            ],
            None,
        );
        assert_eq!(gzipped, plain, "{name}.gz");
        let piped_gz = lines_of(
            &["--read", "-", "--print", "--format", "json", "-q"],
            Some(&out.stdout),
        );
        assert_eq!(piped_gz, plain, "{name}.gz from stdin");
    }
    // A broken gzip file is an error that says so, not a panic.
    let bad = dir.join("bad.pcap.gz");
    std::fs::write(&bad, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3]).unwrap();
    let out = pitapd(&["--read", bad.to_str().unwrap(), "--print", "-q"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("gzip"),
        "{out:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_usage_error_is_short() {
    let out = pitapd(&["--read"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.lines().count() <= 2, "{stderr}");
    assert!(stderr.contains("--help"), "{stderr}");
}
