//! A signal: its name as users write it (`TERM`, `SIGTERM`, `15`, `RTMIN+3`) and as logs print it,
//! and sending it.

use std::fmt;

const NAMED: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// A signal number, known to be valid on this system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal(i32);

impl Signal {
    pub const TERM: Signal = Signal(libc::SIGTERM);
    pub const HUP: Signal = Signal(libc::SIGHUP);
    pub const INT: Signal = Signal(libc::SIGINT);
    pub const KILL: Signal = Signal(libc::SIGKILL);
    pub const STOP: Signal = Signal(libc::SIGSTOP);
    pub const CONT: Signal = Signal(libc::SIGCONT);

    /// Wraps a raw number from the kernel, 32-34 (which libc keeps for itself) included; `None`
    /// outside `1..=SIGRTMAX`.
    pub fn from_raw(n: i32) -> Option<Signal> {
        (1..=libc::SIGRTMAX()).contains(&n).then_some(Signal(n))
    }

    pub fn raw(self) -> i32 {
        self.0
    }
}

impl fmt::Display for Signal {
    /// `SIGTERM`, `SIGRTMIN+3`, or `signal 33` for the numbers meshwait's libc keeps for itself
    /// (below its SIGRTMIN: their meaning depends on the receiver's libc).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((name, _)) = NAMED.iter().find(|(_, n)| *n == self.0) {
            return write!(f, "SIG{name}");
        }
        let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
        match self.0 {
            n if n == max => write!(f, "SIGRTMAX"),
            n if n >= min && n - min <= max - n => write!(f, "SIGRTMIN+{}", n - min),
            n if n >= min => write!(f, "SIGRTMAX-{}", max - n),
            n => write!(f, "signal {n}"),
        }
    }
}

impl std::str::FromStr for Signal {
    type Err = String;

    /// Accepts `TERM`, `SIGTERM`, `sigterm`, `15`, `RTMIN`, `SIGRTMIN+3`, `RTMAX-1`.
    fn from_str(text: &str) -> Result<Signal, String> {
        let bad = || {
            format!(
                "unknown signal '{text}': use a name such as TERM, SIGQUIT or RTMIN+2, or a number 1-{}",
                libc::SIGRTMAX()
            )
        };
        let trimmed = text.trim();
        let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
        // A number is the kernel's, 32-34 included: the app's C library may not be meshwait's
        // (a glibc app's SIGRTMIN is 34, the static meshwait's RTMIN is musl's 35).
        if let Ok(n) = trimmed.parse::<i32>() {
            return Signal::from_raw(n).ok_or_else(bad);
        }
        let upper = trimmed.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Some((_, n)) = NAMED.iter().find(|(known, _)| *known == name) {
            return Ok(Signal(*n));
        }
        let offset = |rest: &str, sign: char| -> Option<i32> {
            if rest.is_empty() {
                return Some(0);
            }
            rest.strip_prefix(sign)?
                .parse::<i32>()
                .ok()
                .filter(|n| *n >= 0)
        };
        let n = if let Some(rest) = name.strip_prefix("RTMIN") {
            offset(rest, '+').and_then(|k| min.checked_add(k))
        } else if let Some(rest) = name.strip_prefix("RTMAX") {
            offset(rest, '-').and_then(|k| max.checked_sub(k))
        } else {
            None
        };
        n.filter(|n| (min..=max).contains(n))
            .map(Signal)
            .ok_or_else(bad)
    }
}

/// kill(2) with any signal number: nix's `Signal` enum cannot express real-time signals.
pub fn send(target: nix::unistd::Pid, signal: Signal) -> nix::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    nix::errno::Errno::result(unsafe { libc::kill(target.as_raw(), signal.raw()) }).map(drop)
}

/// Whether any process in the group still exists (kill with signal 0 delivers nothing).
pub fn send_probe(group: nix::unistd::Pid) -> nix::Result<()> {
    // SAFETY: signal 0 only checks for existence and permission.
    nix::errno::Errno::result(unsafe { libc::kill(-group.as_raw(), 0) }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::Signal;

    fn parse(text: &str) -> Result<i32, String> {
        text.parse::<Signal>().map(Signal::raw)
    }

    #[test]
    fn names_with_and_without_prefix_and_numbers() {
        assert_eq!(parse("TERM"), Ok(libc::SIGTERM));
        assert_eq!(parse("SIGTERM"), Ok(libc::SIGTERM));
        assert_eq!(parse("sigquit"), Ok(libc::SIGQUIT));
        assert_eq!(parse("15"), Ok(15));
        assert_eq!(parse(" WINCH "), Ok(libc::SIGWINCH));
    }

    #[test]
    fn realtime_offsets() {
        assert_eq!(parse("RTMIN"), Ok(libc::SIGRTMIN()));
        assert_eq!(parse("SIGRTMIN+3"), Ok(libc::SIGRTMIN() + 3));
        assert_eq!(parse("RTMAX-1"), Ok(libc::SIGRTMAX() - 1));
        assert!(parse("RTMIN+99").is_err());
        assert!(parse("RTMIN-1").is_err());
        assert!(parse("RTMAX+1").is_err());
        assert!(parse("RTMIN+2147483647").is_err());
        assert!(parse("RTMAX-2147483647").is_err());
        // The numbers libc keeps for itself are the kernel's to send.
        assert_eq!(parse("32"), Ok(32));
        assert_eq!(parse("34"), Ok(34));
    }

    #[test]
    fn rejects_nonsense_with_a_message_naming_the_input() {
        for bad in ["", "0", "-1", "999", "TERMINATE", "SIG", "RTMIN+x"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(&format!("'{bad}'")), "{err}");
        }
    }

    /// Guards the names themselves: every one also parses back as "signal N", so the round trip
    /// alone let each real-time arm fall through to the number.
    #[test]
    fn realtime_signals_are_named_from_the_nearer_end() {
        let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
        let shown = |n: i32| Signal::from_raw(n).unwrap().to_string();
        assert_eq!(shown(max), "SIGRTMAX");
        assert_eq!(shown(min), "SIGRTMIN+0");
        assert_eq!(shown(min + 3), "SIGRTMIN+3");
        assert_eq!(shown(max - 2), "SIGRTMAX-2");
        let middle = min + (max - min) / 2;
        assert_eq!(shown(middle), format!("SIGRTMIN+{}", middle - min));
        assert_eq!(shown(middle + 1), format!("SIGRTMAX-{}", max - middle - 1));
        assert_eq!(shown(min - 1), format!("signal {}", min - 1));
    }

    #[test]
    fn display_round_trips() {
        for n in 1..=libc::SIGRTMAX() {
            let shown = Signal::from_raw(n).unwrap().to_string();
            let written = shown.strip_prefix("signal ").unwrap_or(&shown);
            assert_eq!(parse(written), Ok(n), "{shown}");
        }
    }
}
