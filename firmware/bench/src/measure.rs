//! Running a command the way the benchmarks do: wall time and peak RSS
//! (from wait4's rusage, so the figure is the child's own), median of runs.
// wait4 has no safe wrapper; the crate denies unsafe elsewhere.
#![allow(unsafe_code)]

use std::process::{Command, Stdio};
use std::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct Run {
    pub seconds: f64,
    pub max_rss_kib: u64,
}

/// Runs `cmd` once with stdout and stderr discarded.
pub fn run_once(cmd: &mut Command) -> Result<Run, String> {
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = start.elapsed().as_secs_f64();
    if rc != pid {
        return Err(format!("{cmd:?}: wait4 failed"));
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!("{cmd:?}: exit status {status}"));
    }
    Ok(Run {
        seconds,
        max_rss_kib: usage.ru_maxrss as u64,
    })
}

/// One warm-up, then the median of `runs` runs (peak RSS: the largest).
pub fn median_of(runs: usize, mut make: impl FnMut() -> Command) -> Result<Run, String> {
    run_once(&mut make())?;
    let mut all = Vec::new();
    for _ in 0..runs.max(1) {
        all.push(run_once(&mut make())?);
    }
    all.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    Ok(Run {
        seconds: all[all.len() / 2].seconds,
        max_rss_kib: all.iter().map(|r| r.max_rss_kib).max().unwrap_or(0),
    })
}
