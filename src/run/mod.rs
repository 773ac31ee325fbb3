//! The app as PID 1 sees it: from the first blocked signal to the last reaped leftover.

use std::ffi::OsString;
use std::time::Duration;

pub mod drain;
pub mod exec_failure;
pub mod incoming_signals;
pub mod job_control;
pub mod kernel_signals;
pub mod launch;
pub mod leftovers;
pub mod process_table;
pub mod reaper;
pub mod signal;
pub mod stop_hold;
pub mod supervise;
pub mod terminal;

/// The app, as this folder needs it: how to start it, what it must not inherit, and how to stop
/// it.
#[derive(Debug)]
pub struct AppPlan {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// Environment variables of meshwait's own that the app does not inherit.
    pub not_inherited: &'static [&'static str],
    pub stop_signal: signal::Signal,
    pub process_group: bool,
    pub cleanup_grace: Duration,
    pub hold: stop_hold::HoldPlan,
}
