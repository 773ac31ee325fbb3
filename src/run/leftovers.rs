//! After the app exits: leftovers in its process group, and orphans handed to us, get SIGTERM and
//! a short bounded grace, then SIGKILL, instead of the kernel's SIGKILL without warning when PID 1
//! exits.

use std::collections::BTreeSet;
use std::time::Duration;

use nix::errno::Errno;
use nix::unistd::Pid;
use tokio::time::Instant;

use crate::run::incoming_signals::Signals;
use crate::run::launch::Launched;
use crate::run::process_table::Stat;
use crate::run::reaper;
use crate::run::signal::{self, Signal};

/// The `component` of this module's log lines. Users filter logs by it, so it is fixed here,
/// not taken from the module path, which moves when the code is reorganised.
const LOG: &str = "shutdown";

/// How often the grace loop looks again: group members that are not our children send us no
/// SIGCHLD, so their exit can only be noticed by looking.
const RECHECK: Duration = Duration::from_millis(50);

pub async fn cleanup(app: Launched, grace: Duration, signals: &mut Signals) {
    reaper::reap(None, false);
    let left = Leftovers::find(app.group);
    if left.is_empty() {
        return;
    }
    tracing::info!(target: LOG,
        count = left.count(),
        grace_ms = grace.as_millis() as u64,
        "sending SIGTERM to processes the app left behind"
    );
    left.deliver(Signal::TERM);
    let deadline = Instant::now() + grace;
    loop {
        reaper::reap(None, false);
        if Leftovers::find(app.group).is_empty() {
            return;
        }
        let pause = tokio::time::sleep_until(deadline.min(Instant::now() + RECHECK));
        // A second stop request means "now": skip the rest of the grace.
        if signals.unless_stopped(pause, &mut |_| {}).await.is_err() || Instant::now() >= deadline {
            break;
        }
    }
    let still = Leftovers::find(app.group);
    tracing::warn!(target: LOG, count = still.count(), "grace over; sending SIGKILL");
    still.deliver(Signal::KILL);
    // Collect what we just killed so nothing is left as a zombie if we are not PID 1.
    let until = Instant::now() + RECHECK * 4;
    while !Leftovers::find(app.group).is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
        reaper::reap(None, false);
    }
}

/// Live processes in the app's group, and our own remaining children outside it (orphans
/// reparented to us that moved to another group or session).
struct Leftovers {
    group: Pid,
    in_group: BTreeSet<i32>,
    outside: BTreeSet<i32>,
}

impl Leftovers {
    fn find(group: Pid) -> Leftovers {
        let in_group = group_members(group);
        let outside = children()
            .into_iter()
            .filter(|pid| !in_group.contains(pid))
            .collect();
        Leftovers {
            group,
            in_group,
            outside,
        }
    }

    fn is_empty(&self) -> bool {
        self.in_group.is_empty() && self.outside.is_empty()
    }

    fn count(&self) -> usize {
        self.in_group.len() + self.outside.len()
    }

    /// One signal per process: the group gets one kill(-pgid), the others one each. Sending a
    /// group member the signal twice would read as "stop now" to apps that escalate on a repeat.
    fn deliver(&self, signal: Signal) {
        let mut targets: Vec<Pid> = self.outside.iter().map(|pid| Pid::from_raw(*pid)).collect();
        if !self.in_group.is_empty() {
            targets.push(Pid::from_raw(-self.group.as_raw()));
        }
        for target in targets {
            match signal::send(target, signal) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => {
                    tracing::warn!(target: LOG, target = target.as_raw(), error = %e, "could not signal a leftover process");
                }
            }
        }
    }
}

/// Our direct children, from /proc/self/task/*/children (orphans attach to any of our threads).
fn children() -> BTreeSet<i32> {
    let mut pids = BTreeSet::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return pids;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    pids
}

/// Live (non-zombie) members of a process group, found by scanning /proc.
fn group_members(group: Pid) -> BTreeSet<i32> {
    let mut pids = BTreeSet::new();
    // Cheap check first: kill(-pgid, 0) fails with ESRCH when the group is empty.
    if signal::send_probe(group).is_err() {
        return pids;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if Stat::read(pid).is_some_and(|s| s.group == group.as_raw() && !s.is_zombie()) {
            pids.insert(pid);
        }
    }
    pids
}
