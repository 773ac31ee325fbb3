//! `meshwait doctor`: one look at a troubled pod, as a check list with evidence and hints.
//!
//! Meant for `kubectl exec POD -c APP -- meshwait doctor` (or a debug step in a Job). Every HTTP
//! request is bounded and they all run at once, so the whole look takes about two seconds at
//! most even when every endpoint hangs. Nothing is changed: the quit endpoint is asked with a
//! GET (which pilot-agent refuses with 405) or, for Linkerd, through the proxy's `/env.json`.
//!
//! Three steps, one file each: `gather` reads, `checks` judges, `report` writes. `meshwaits`
//! finds the meshwait that supervises this container among the processes.

mod checks;
mod gather;
mod meshwaits;
mod report;

use std::io::Write as _;

use crate::commands::plan::DoctorPlan;
use crate::exit_code;
use crate::run::incoming_signals::Signals;

/// Looks, judges and prints the report; 0 when nothing failed, 1 otherwise, 128+N on a stop
/// signal.
pub async fn examine(plan: &DoctorPlan, signals: &mut Signals) -> i32 {
    let seen = match signals
        .unless_stopped(gather::look(plan), &mut |_| {})
        .await
    {
        Ok(seen) => seen,
        Err(stop) => return exit_code::for_signal(stop.signal.raw()),
    };
    let checks = checks::judge(plan, seen);
    let text = if plan.json {
        report::json(plan.mesh, &checks)
    } else {
        report::text(plan.mesh, &checks)
    };
    let _ = std::io::stdout().write_all(text.as_bytes());
    if report::problems(&checks) > 0 {
        exit_code::PROBLEMS_FOUND
    } else {
        exit_code::OK
    }
}
