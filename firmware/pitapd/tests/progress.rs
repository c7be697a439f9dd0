//! `pitapd --read --progress`: on a terminal (a real pty, made by
//! util-linux `script`) an indicatif bar, erased at the end; redirected to
//! a file, not one frame of it.

mod common;

use std::process::Command;

use common::*;

#[test]
fn the_bar_is_drawn_on_a_terminal_and_nowhere_else() {
    let file = real_pcap("zeek__smb_smb2.pcap");
    let pitapd = env!("CARGO_BIN_EXE_pitapd");
    let path = file.to_str().unwrap();

    // Redirected: stderr holds the summary only.
    let out = Command::new(pitapd)
        .args(["--read", path, "--print", "--progress"])
        .stdout(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains('\r') && !stderr.contains('%'),
        "{stderr:?}"
    );
    assert!(
        stderr.contains("frames"),
        "the summary is still there: {stderr}"
    );

    // On a pty: the bar, with its percentage and counts, drawn and erased.
    let out = Command::new("script")
        .args([
            "-qec",
            &format!("{pitapd} --read {path} --print --progress --quiet >/dev/null"),
            "/dev/null",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(tty.contains('%') && tty.contains("flows open"), "{tty:?}");
    assert!(tty.contains("\u{1b}["), "erased with an escape: {tty:?}");
}
