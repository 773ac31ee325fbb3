//! meshwait: gate an app until its service-mesh sidecar is ready, then supervise it as PID 1.
//!
//! The binary (`main.rs`) is a thin C entry point; everything else lives here so it can be unit
//! tested. Data flows one way: `cli` → `plan` → `gate` → `launch`/`supervise` (with `stop_hold`
//! and `drain` on SIGTERM) → `shutdown` → `quit_proxy`,
//! orchestrated by `lifecycle`.

mod argv;
mod cli;
mod connection_class;
mod conns;
mod diagnosis;
mod doctor;
mod drain;
mod envoy_admin;
mod envoy_clusters;
mod exec_failure;
pub mod exit_code;
mod gate;
mod install;
mod job_control;
mod kernel_signals;
mod launch;
mod lifecycle;
mod listener_watch;
mod logging;
mod mesh;
mod name_lookup;
mod plan;
mod port_set;
mod probe;
mod process_table;
mod quit_proxy;
mod ready_url;
mod reaper;
mod request_first;
mod shutdown;
mod sidecar_view;
mod signal_name;
mod signals;
mod sockets;
mod stop_hold;
mod supervise;
mod untrusted_text;
mod usage;

pub use lifecycle::main as run;
pub use signals::{Inherited, block_all};
