//! The one-way flow: command line → plan → gate → supervise → shutdown.

pub mod argv;
pub mod cli;
mod conns;
mod doctor;
mod drain;
mod install;
pub mod logging;
pub mod plan;
mod ready;
mod run;
mod usage;

use std::ffi::OsString;
use std::io::Write;

use tokio::runtime::Runtime;

use crate::commands::cli::LogFormat;
use crate::commands::plan::Plan;
use crate::exit_code;
use crate::run::incoming_signals::{self, Inherited, Signals};
use crate::run::kernel_signals::Mask;

/// The `component` of this module's log lines. Users filter logs by it, so it is fixed here,
/// not taken from the module path, which moves when the code is reorganised.
const LOG: &str = "lifecycle";

/// Runs meshwait with `args` (argv, program name first) and returns the exit status.
pub fn main(args: Vec<OsString>, inherited: Inherited) -> i32 {
    forget_empty_settings();
    let json = usage::wants_json(&args);
    let (cli, unknown) = match usage::parse(args) {
        Ok(parsed) => (parsed.cli, parsed.unknown),
        Err(refusal) => {
            usage::say(&refusal, json);
            return refusal.code;
        }
    };
    let json = cli.log.log_format == LogFormat::Json;
    logging::init(&cli.log);
    for name in unknown {
        tracing::warn!(target: LOG,
            variable = %name,
            "{name} is no meshwait setting (a typo? `meshwait --help` lists each option's \
             variable); ignored"
        );
    }
    let plan = match Plan::from_cli(cli) {
        Ok(plan) => plan,
        Err(message) => {
            let refusal = usage::Refusal {
                code: exit_code::USAGE,
                text: format!("error: {message}\n\nFor more information, try '--help'.\n"),
                to_stdout: false,
            };
            usage::say(&refusal, json);
            return refusal.code;
        }
    };
    // One thread: no worker may ever run with signals unblocked, forks stay simple, and an idle
    // current-thread runtime sleeps in epoll_wait with no timer. At most one blocking thread (name
    // lookups for a URL's host name, one per name at a time): a lookup stuck on a dead resolver
    // then delays the others instead of piling up threads.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .on_thread_start(incoming_signals::block_in_new_thread)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            say_error(&format!("cannot start the event loop: {e}"));
            return exit_code::OS_ERROR;
        }
    };
    let code = execute(plan, inherited, &runtime);
    // Do not wait for a name lookup still running on the blocking thread: exit now.
    runtime.shutdown_background();
    code
}

fn execute(plan: Plan, inherited: Inherited, runtime: &Runtime) -> i32 {
    // Signals::open registers with the runtime's reactor, so it needs the runtime entered.
    let _context = runtime.enter();
    let mut signals = match Signals::open(&Mask::everything(), &inherited) {
        Ok(signals) => signals,
        Err(e) => {
            tracing::error!(target: LOG, error = %e, "cannot open a signalfd");
            return exit_code::OS_ERROR;
        }
    };
    match plan {
        Plan::Ready { gate, wait } => ready::ready(&gate, wait, runtime, &mut signals),
        Plan::Run(plan) => run::run(*plan, inherited, runtime, &mut signals),
        Plan::Drain {
            sockets,
            until,
            timeout,
        } => drain::drain_until(sockets, until, timeout, &mut signals, runtime),
        Plan::Doctor(plan) => runtime.block_on(doctor::examine(&plan, &mut signals)),
        Plan::Install { dir } => install::command(&dir),
        Plan::Conns { sockets, json } => conns::command(&sockets, json, runtime),
    }
}

/// Writes a usage or start-up error. Never panics: a closed stderr must not turn into an abort.
fn say_error(message: &str) {
    let _ = writeln!(std::io::stderr(), "error: {message}");
}

/// Treats `MESHWAIT_X=""` as unset: templated manifests (`value: {{ .Values.x | quote }}`) write
/// empty strings when they mean "use the default".
fn forget_empty_settings() {
    let empty: Vec<OsString> = std::env::vars_os()
        .filter(|(key, value)| key.to_string_lossy().starts_with("MESHWAIT_") && value.is_empty())
        .map(|(key, _)| key)
        .collect();
    for key in empty {
        // SAFETY: called before the runtime starts, while meshwait has exactly one thread.
        unsafe { std::env::remove_var(key) };
    }
}
