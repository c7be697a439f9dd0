//! Output to a reader that goes away (`pitapd --read big.pcap --print |
//! head -1`): pitapd ends quietly with status 0, no abort, no error about
//! the pipe (it stops reading once a write has failed; in this capture most
//! flows end at its end, so it reads it all).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

#[test]
fn a_closed_stdout_ends_a_replay_quietly() {
    let dir = temp_dir("closed-output");
    let capture = generated(&dir, 300_000);
    for format in ["text", "json", "zeek"] {
        let mut child = Command::new(pitapd_bin())
            .arg("--read")
            .arg(&capture)
            .args(["--print", "--format", format])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        // The reader is dropped here: the pipe closes.
        assert!(!first.is_empty());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{format}: {:?} {stderr}", out.status);
        assert!(
            !stderr.contains("Broken pipe") && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
