//! The app as PID 1 sees it: from the first blocked signal to the last reaped leftover.

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
