//! The C entry point of meshwait.
//!
//! `no_main` so that blocking signals really is the first thing the process does: Rust's usual
//! start-up code runs before `fn main` and, among other things, sets SIGPIPE to ignored, which
//! would hide the disposition the app is supposed to inherit.
#![no_main]

use std::ffi::{CStr, OsString, c_char, c_int};
use std::io::Write;
use std::os::unix::ffi::OsStringExt;

/// # Safety
/// Called by the C runtime with a valid argv of `argc` NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    // First: as PID 1 an unhandled signal is dropped; a blocked one waits for us (signals.rs).
    let inherited = match meshwait::block_all() {
        Ok(inherited) => inherited,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: cannot block signals: {e}");
            return meshwait::exit_code::OS_ERROR;
        }
    };
    open_missing_standard_fds();
    // SAFETY: per the C runtime's contract on argc/argv.
    let args = unsafe { collect_args(argc, argv) };
    meshwait::run(args, inherited)
}

/// Points a closed fd 0, 1 or 2 at /dev/null, as Rust's usual start-up code would have done.
///
/// Otherwise the next descriptor meshwait opens (its epoll instance) would become, say, fd 2,
/// and log lines would be written into it.
fn open_missing_standard_fds() {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only queries the descriptor.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            // SAFETY: the path is a valid C string; open returns the lowest free descriptor,
            // which is `fd` because every lower one is open by now.
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
    }
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
