//! meshwait: gate an app until its service-mesh sidecar is ready, then supervise it as PID 1.
//!
//! The binary (`main.rs`) is a thin C entry point; everything else lives here so it can be unit
//! tested.
//!
//! # Layout
//!
//! Data flows one way, from the command line to the app's exit:
//!
//! - [`commands`]: the edge. Argument parsing (the only user of clap), the validated plan, logging,
//!   and one file per subcommand (`run`, `ready`, `drain`, `conns`, `doctor/`, `install`).
//! - [`proxy`]: the sidecar, seen from inside the pod: mesh presets, its URLs, one bounded HTTP
//!   request, the readiness gate, Envoy's admin pages, the hint table, and asking it to quit.
//! - [`run`]: the app as PID 1 sees it: signals, launch, job control, supervision, the stop-signal
//!   hold and its drain, reaping, and leftovers after the app exits.
//! - [`sockets`]: the pod's TCP sockets (netlink or procfs), port sets, and which connections
//!   are the proxy's and which hold the pod up.
//!
//! `exit_code` holds every status meshwait chooses, and `untrusted_text` decides which characters
//! from outside may be shown as they are. Lower folders never reach up: `run`, `proxy` and
//! `sockets` do not use `commands`.

mod commands;
pub mod exit_code;
mod proxy;
mod run;
mod sockets;
mod untrusted_text;

pub use commands::main as run;
pub use run::incoming_signals::{Inherited, block_all};
