//! A minimal init that starts a child and forwards SIGRTMIN+1 to it, counting each forward, in one
//! of two ways: `hook` (signal-hook's iterator: a handler per signal that records it and wakes a
//! reader) or `wait` (the signal blocked and dequeued with sigwaitinfo, as meshwait does). SIGUSR1
//! ends it. Usage: forwarders hook|wait COMMAND [ARGS]...

use std::process::Command;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = libc::SIGRTMIN() + 1;
    let mut forwarded = 0u64;
    if args[1] == "wait" {
        // SAFETY: plain libc calls on local, initialised values.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, rt);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            let child = Command::new(&args[2]).args(&args[3..]).spawn().unwrap();
            loop {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                let s = libc::sigwaitinfo(&set, &mut info);
                if s < 0 || s == libc::SIGUSR1 {
                    break;
                }
                libc::kill(child.id() as i32, s);
                forwarded += 1;
            }
        }
    } else {
        let mut signals = signal_hook::iterator::Signals::new([rt, libc::SIGUSR1]).unwrap();
        let child = Command::new(&args[2]).args(&args[3..]).spawn().unwrap();
        for s in signals.forever() {
            if s == libc::SIGUSR1 {
                break;
            }
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(child.id() as i32, s) };
            forwarded += 1;
        }
    }
    println!("{forwarded}");
}
