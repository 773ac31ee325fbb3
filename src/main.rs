//! The C entry point of meshwait.
//!
//! `no_main` so that blocking signals really is the first thing the process does: Rust's usual
//! start-up code runs before `fn main` and, among other things, sets SIGPIPE to ignored, which
//! would hide the disposition the app is supposed to inherit.
#![no_main]

use std::ffi::{CStr, OsString, c_char, c_int};
use std::os::unix::ffi::OsStringExt;

/// # Safety
/// Called by the C runtime with a valid argv of `argc` NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    // First: as PID 1 an unhandled signal is dropped; a blocked one waits for us (signals.rs).
    let inherited = match meshwait::block_all() {
        Ok(inherited) => inherited,
        Err(e) => {
            eprintln!("error: cannot block signals: {e}");
            return meshwait::exit_code::OS_ERROR;
        }
    };
    // SAFETY: per the C runtime's contract on argc/argv.
    let args = unsafe { collect_args(argc, argv) };
    meshwait::run(args, inherited)
}

/// argv as OS strings. std's `env::args` is not filled in under `no_main` on every libc (musl).
///
/// # Safety
/// `argv` must hold `argc` valid NUL-terminated strings.
unsafe fn collect_args(argc: c_int, argv: *const *const c_char) -> Vec<OsString> {
    (0..usize::try_from(argc).unwrap_or(0))
        .map(|i| {
            // SAFETY: i < argc.
            let arg = unsafe { CStr::from_ptr(*argv.add(i)) };
            OsString::from_vec(arg.to_bytes().to_vec())
        })
        .collect()
}
