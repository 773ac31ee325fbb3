//! Interactive use from a shell: when the app stops (Ctrl-Z, a background read of the terminal,
//! an editor suspending itself), meshwait must stop with it.
//!
//! meshwait hands the terminal to the app's process group, so the terminal's SIGTSTP reaches the
//! app alone. The shell, though, waits on meshwait: if only the app stopped, the shell would hang
//! with no terminal until someone sent SIGCONT. So when the app stops, meshwait stops its own
//! group (with a script that runs meshwait, which shares it); when the shell resumes it (`fg` or
//! `bg`), it gives the terminal back to the app's group if the shell gave it to us, and resumes
//! the app. Without a terminal none of this applies: a stop then comes from outside (a
//! debugger, `kill -STOP`) and is left alone.
//!
//! When nothing would resume a stopped meshwait (as PID 1, `docker run -it`, the kernel ignores
//! the SIGSTOP it would send itself; in an orphaned group, such as under `docker run -it
//! --init` or `kubectl exec -it`, no shell is left), the app is resumed at once: Ctrl-Z does
//! nothing, as it does to an app that is PID 1 itself, and as the kernel makes SIGTSTP do
//! nothing in an orphaned group. A stop for the terminal (SIGTTIN, SIGTTOU: the app used the
//! terminal from the background) is different: resuming the app would only make it stop again
//! at once, for ever. meshwait resumes it only after handing it the terminal, which it can when
//! its own group is the foreground; when not, the app stays stopped ("parked", one warning says
//! why) until meshwait's group becomes the foreground (looked at four times a second while
//! parked) or a signal sent to meshwait is forwarded to it. In an orphaned group, where no
//! `fg` can come, the app is first hung up once, as the kernel does to stopped members of an
//! orphaned group.
//!
//! Whether a group is the terminal's foreground, also from inside a PID namespace, and handing
//! the terminal over are in `terminal`, which launching uses too.

use nix::unistd::{self, Pid};

use crate::run::incoming_signals;
use crate::run::launch::Launched;
use crate::run::process_table::Stat;
use crate::run::signal::{self, Signal};
use crate::run::terminal::{foreground_is, give_terminal, own_group_is_foreground};

/// The `component` of this module's log lines. Users filter logs by it, so it is fixed here,
/// not taken from the module path, which moves when the code is reorganised.
const LOG: &str = "job_control";

/// What following the app's stops remembers from one stop to the next.
#[derive(Default)]
pub struct Follower {
    /// The warning about a terminal stop meshwait could not resolve has been given.
    warned: bool,
    /// An orphaned meshwait has already hung the app up once for a terminal stop.
    hung_up: bool,
    /// The app is left stopped for a terminal meshwait could not give it.
    parked: bool,
}

/// How often a parked app's terminal is looked at again. Nothing signals meshwait when a shell's
/// `fg` makes its group the foreground: the shell sends SIGCONT only to a job that stopped, and
/// meshwait, which cannot stop here, never did. One look is an open and a zero-byte read.
const RECHECK: std::time::Duration = std::time::Duration::from_millis(250);

impl Follower {
    /// Follows the app into a stop. Returns once meshwait has been resumed, or at once when it
    /// cannot stop (PID 1, an orphaned group).
    pub fn follow_stop(&mut self, app: Launched, stop: i32) {
        // Every stop counts, SIGSTOP included: editors such as nano catch SIGTSTP and then stop
        // their group with SIGSTOP, and shells treat any stop of a foreground job the same way.
        tracing::debug!(target: LOG, pid = app.pid.as_raw(), stop, "app stopped");
        let for_terminal = stop == libc::SIGTTIN || stop == libc::SIGTTOU;
        let pid1 = std::process::id() == 1;
        if !pid1 && !own_group_is_orphaned() {
            // The whole of meshwait's group stops, as the job's group would have stopped without
            // meshwait: a script that runs meshwait shares the group, and the shell sees its
            // job stopped only once the script has stopped too. SIGSTOP cannot be blocked: this
            // returns once the shell sends SIGCONT.
            let _ = signal::send(Pid::from_raw(0), Signal::STOP);
            // The shell's SIGCONT is still pending (meshwait blocks it): the app gets exactly one,
            // below, so this one must not be forwarded too.
            incoming_signals::discard_pending(Signal::CONT);
            if app.on_terminal && own_group_is_foreground() {
                give_terminal(app.group);
            }
        } else if for_terminal && !hand_terminal_over(app) {
            // Nothing would resume a stopped meshwait: as PID 1 the kernel ignores the SIGSTOP
            // it would send itself, and no shell is left to continue an orphaned group. Other
            // stops are simply undone (Ctrl-Z does nothing, as the kernel makes SIGTSTP do
            // nothing in an orphaned group), but an app continued into a terminal it still
            // cannot have would stop again at once, for ever. In an orphaned group the kernel
            // hangs up such stopped members, then continues them: so does meshwait, once; an
            // app that survives the hang-up and uses the terminal again is left stopped, as it
            // is as PID 1, where a shell outside the PID namespace can still `fg` meshwait.
            if pid1 || self.hung_up {
                self.park(app, stop);
                return;
            }
            self.hung_up = true;
            let _ = signal::send(group_of(app), Signal::HUP);
        }
        let _ = signal::send(group_of(app), Signal::CONT);
        tracing::debug!(target: LOG, pid = app.pid.as_raw(), "app continued");
    }

    /// How long to wait for a signal before `recheck`; `None`: no timer, as normally.
    pub fn recheck_in(&self) -> Option<std::time::Duration> {
        self.parked.then_some(RECHECK)
    }

    /// For a parked app: hands it the terminal and resumes it once meshwait may.
    pub fn recheck(&mut self, app: Launched) {
        if self.parked && hand_terminal_over(app) {
            self.parked = false;
            let _ = signal::send(group_of(app), Signal::CONT);
            tracing::debug!(target: LOG,
                pid = app.pid.as_raw(),
                "the terminal is free; app continued"
            );
        }
    }

    /// A SIGCONT from outside is on its way to the app: it is no longer meshwait's to resume.
    pub fn continued(&mut self) {
        self.parked = false;
    }

    /// After `signal` was forwarded to the app. A stopped process leaves even SIGTERM pending
    /// until it is continued, so an app meshwait keeps stopped would never act on what it was
    /// sent (a container stop would wait for SIGKILL): it is continued, as a shell's `kill`
    /// continues a stopped job after signalling it. If it then uses the terminal again, it
    /// stops again and is kept stopped again. Stop signals and SIGCONT are left as they are.
    pub fn forwarded(&mut self, app: Launched, signal: Signal) {
        let stop_or_cont = [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU, libc::SIGCONT];
        if self.parked && !stop_or_cont.contains(&signal.raw()) {
            self.parked = false;
            let _ = signal::send(group_of(app), Signal::CONT);
        }
    }

    /// Leaves the app stopped for a terminal meshwait cannot give it, with one warning per run
    /// however often it recurs.
    fn park(&mut self, app: Launched, stop: i32) {
        self.parked = true;
        if self.warned {
            return;
        }
        self.warned = true;
        let signal = Signal::from_raw(stop).map_or_else(|| stop.to_string(), |s| s.to_string());
        tracing::warn!(target: LOG,
            pid = app.pid.as_raw(),
            signal,
            "the app stopped to use the terminal, which meshwait cannot give it (meshwait is not \
             in the terminal's foreground); it stays stopped until meshwait's group is brought \
             to the foreground (a shell's fg); a signal sent to meshwait is forwarded and \
             continues it"
        );
    }
}

/// For a stop by SIGTTIN or SIGTTOU: whether the app may use the terminal once continued, after
/// handing the terminal to its group when meshwait's own group is the foreground.
fn hand_terminal_over(app: Launched) -> bool {
    if !app.on_terminal {
        return false;
    }
    if foreground_is(app.group) {
        return true;
    }
    own_group_is_foreground() && give_terminal(app.group)
}

/// After the app exits: take the terminal back from its group, or the shell's next job (or the
/// script that ran meshwait) would be stopped reading a terminal it no longer owns.
pub fn reclaim_terminal(app: Launched) {
    if !(app.on_terminal && foreground_is(app.group)) {
        return;
    }
    let own = unistd::getpgrp();
    if own.as_raw() == 0 {
        // meshwait's group lies outside its PID namespace and has no number here, so tcsetpgrp
        // cannot name it. The terminal stays with the app's finished group, as it would after
        // an app that took it itself; the shell that started the job takes it back when the
        // job ends, as job-control shells do after every foreground job.
        tracing::debug!(target: LOG, "the terminal's owner lies outside this PID namespace; leaving it");
        return;
    }
    give_terminal(own);
}

fn group_of(app: Launched) -> Pid {
    Pid::from_raw(-app.group.as_raw())
}

/// POSIX: a group is orphaned when no member has a parent in another group of the same session,
/// so no shell is left to resume it. The member that matters is the first ancestor outside
/// meshwait's group, found by walking up through the group (a script that runs meshwait shares
/// its group, and the interactive shell that started the script is the one that resumes the
/// job). An init (PID 1, or 0: a parent outside this PID namespace) counts as no shell: none
/// resumes a stopped job. When the chain cannot be read the group counts as orphaned, since
/// stopping there could be for ever.
fn own_group_is_orphaned() -> bool {
    let (group, session, mut parent) = (unistd::getpgrp(), unistd::getsid(None), unistd::getppid());
    // A bound on the walk: a chain of scripts deeper than this is taken as orphaned.
    for _ in 0..64 {
        if parent.as_raw() <= 1 {
            return true;
        }
        let parent_group = unistd::getpgid(Some(parent));
        // A vanished parent has no session (an error), which is never meshwait's: orphaned.
        if unistd::getsid(Some(parent)) != session {
            return true;
        }
        if parent_group != Ok(group) {
            return false;
        }
        match Stat::read(parent.as_raw()) {
            Some(stat) => parent = Pid::from_raw(stat.parent),
            None => return true,
        }
    }
    true
}
