//! meshwait: gate an app until its service-mesh sidecar is ready, then supervise it as PID 1.
//!
//! The binary (`main.rs`) is a thin C entry point; everything else lives here so it can be unit
//! tested.
//!
//! # Layout
//!
//! Data flows one way, from the command line to the app's exit:
//!
//! - `commands/`: the edge. Argument parsing (the only user of clap), the validated plan, logging,
//!   and one file per subcommand (`run`, `ready`, `drain`, `conns`, `doctor/`, `install`).
//! - `proxy/`: the sidecar, seen from inside the pod: mesh presets, its URLs, one bounded HTTP
//!   request, the readiness gate, Envoy's admin pages, the hint table, and asking it to quit.
//! - `run/`: the app as PID 1 sees it: signals, launch, job control, supervision, the stop-signal
//!   hold and its drain, reaping, and leftovers after the app exits.
//! - `sockets/`: the pod's TCP sockets (netlink or procfs), port sets, and which connections
//!   are the proxy's and which hold the pod up.
//!
//! `exit_code` holds every status meshwait chooses, and `untrusted_text` decides which characters
//! from outside may be shown as they are. Nothing below `commands` reaches up to it or to clap;
//! `sockets` uses no other folder; `run` and `proxy` meet where a stage needs the other's piece
//! (the gate reads signals, the drain reads Envoy's request counts). The test at the end of this
//! file holds the code to these rules.

mod commands;
pub mod exit_code;
mod proxy;
mod run;
mod sockets;
mod untrusted_text;

pub use commands::main as run;
pub use run::incoming_signals::{Inherited, block_all};

/// Every file under `src/<folder>` ("" for all of `src/`), with its text: for the tests that
/// hold the source to its own rules (the layering below, the log components in `logging`).
#[cfg(test)]
fn source_files(folder: &str) -> Vec<(String, String)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path.display().to_string(), text));
            }
        }
    }
    let mut out = Vec::new();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    walk(&src.join(folder), &mut out);
    assert!(!out.is_empty(), "{folder}");
    out
}

/// A page of the manual (`docs/NAME`), for the tests that hold it to the code it describes (the
/// log components in `logging`, the hint table in `diagnosis`).
#[cfg(test)]
fn manual_page(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[cfg(test)]
mod layout {
    use crate::source_files;

    #[test]
    fn lower_folders_do_not_reach_up() {
        for folder in ["run", "proxy", "sockets"] {
            for (path, text) in source_files(folder) {
                for word in ["crate::commands", "clap::"] {
                    assert!(!text.contains(word), "{path} uses {word}");
                }
                if folder == "sockets" {
                    for word in ["crate::run", "crate::proxy"] {
                        assert!(!text.contains(word), "{path} uses {word}");
                    }
                }
            }
        }
    }
}
