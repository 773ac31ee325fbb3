//! Every exit status meshwait can produce itself, in one place.
//!
//! Whatever the app returns is passed through unchanged; these are the codes meshwait chooses when
//! it has to speak for itself. The manual's exit-code table (docs/exit-codes.md) mirrors this file.

/// Success: `meshwait ready` found the proxy ready, or a gate-only wait ended ready.
pub const OK: i32 = 0;
/// `meshwait ready` (single probe): the proxy answered, but not ready, or did not answer.
pub const NOT_READY: i32 = 1;
/// `meshwait drain`: the timeout passed with connections still blocking.
pub const STILL_BUSY: i32 = 1;
/// `meshwait doctor`: at least one check failed.
pub const PROBLEMS_FOUND: i32 = 1;
/// Bad command line or environment: unknown flag, bad duration, URL or signal, missing command.
pub const USAGE: i32 = 2;
/// EX_UNAVAILABLE from sysexits.h: the proxy never became ready within `--timeout`.
pub const PROXY_UNAVAILABLE: i32 = 69;
/// EX_SOFTWARE from sysexits.h: the app is gone but its exit status never reached meshwait
/// (another process reaped it). Should not happen; reported rather than waited on forever.
pub const STATUS_LOST: i32 = 70;
/// EX_OSERR from sysexits.h: the operating system refused something meshwait cannot work
/// without (signalfd, the async runtime).
pub const OS_ERROR: i32 = 71;
/// EX_CANTCREAT from sysexits.h: `meshwait install` could not write its copy.
pub const CANNOT_CREATE: i32 = 73;
/// The command exists but could not be executed (permissions, format, a directory).
pub const CANNOT_EXECUTE: i32 = 126;
/// The command was not found.
pub const NOT_FOUND: i32 = 127;
/// Death by signal N is reported as `SIGNALLED_BASE + N`, the shell convention.
pub const SIGNALLED_BASE: i32 = 128;

/// The status a shell would report for a process killed by `signal`.
pub fn for_signal(signal: i32) -> i32 {
    SIGNALLED_BASE + signal
}
