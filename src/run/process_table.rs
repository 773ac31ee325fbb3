//! Processes as /proc shows them to an unprivileged reader: name, argv, state, parent and
//! process group. Supervision reads it for leftovers and the orphan check; doctor, which arrives
//! by `kubectl exec` as a sibling of the app rather than its child, looks through the PID
//! namespace with it for who runs this container.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;

use crate::untrusted_text;

/// How much of a command line is read: enough for any meshwait invocation, while a neighbour with
/// a multi-megabyte argv cannot inflate the doctor's memory.
const ARGV_READ_MAX: u64 = 16 * 1024;

/// A process as /proc shows it to an unprivileged reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    /// The kernel's name for it (the executable's name, at most 15 bytes).
    pub comm: String,
    /// argv, or empty when unreadable (a kernel thread, a zombie, a process already gone), or
    /// when not read: only PID 1's and a `meshwait`'s are.
    pub argv: Vec<String>,
    /// Exited but not yet reaped: its name lingers, but it supervises nothing.
    pub zombie: bool,
}

impl Process {
    pub fn read(pid: u32) -> Option<Process> {
        // One read gives both the name and the state: /proc/PID/comm would be a second.
        let stat = fs::read(format!("/proc/{pid}/stat")).ok()?;
        let (comm, zombie) = name_and_zombie(&stat)?;
        // Only the command lines a report can use are read, so a crowded PID namespace (a shared
        // one, `shareProcessNamespace: true`) costs one small read per process.
        let argv = if pid == 1 || comm == "meshwait" {
            read_argv(pid).unwrap_or_default()
        } else {
            Vec::new()
        };
        Some(Process {
            pid,
            comm,
            argv,
            zombie,
        })
    }

    /// argv joined for display (escaped and capped: any process may name itself anything), or
    /// the comm in brackets as `ps` shows argv-less processes.
    pub fn command_line(&self) -> String {
        if self.argv.is_empty() {
            format!("[{}]", untrusted_text::piece(&self.comm))
        } else {
            untrusted_text::piece(&self.argv.join(" "))
        }
    }

    /// Whether this process is in the reader's mount namespace, that is in the same container.
    /// With `shareProcessNamespace: true` every container's processes are listed, and any of them
    /// can call itself meshwait; only one in this container supervises this container's app. An
    /// error when /proc hides it (another user, without CAP_SYS_PTRACE).
    pub fn shares_mounts_with_me(&self) -> io::Result<bool> {
        let mine = fs::metadata("/proc/self/ns/mnt")?;
        let theirs = fs::metadata(format!("/proc/{}/ns/mnt", self.pid))?;
        Ok(mine.dev() == theirs.dev() && mine.ino() == theirs.ino())
    }
}

/// argv, at most `ARGV_READ_MAX` bytes of it.
fn read_argv(pid: u32) -> io::Result<Vec<String>> {
    let mut raw = Vec::new();
    File::open(format!("/proc/{pid}/cmdline"))?
        .take(ARGV_READ_MAX)
        .read_to_end(&mut raw)?;
    Ok(split_argv(&raw))
}

fn split_argv(raw: &[u8]) -> Vec<String> {
    raw.split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// What supervision reads of a process in /proc/PID/stat: its state letter, parent and process
/// group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub parent: i32,
    pub group: i32,
}

impl Stat {
    /// `None` once the process is gone (or /proc is not this PID namespace's and has no such
    /// pid).
    pub fn read(pid: i32) -> Option<Stat> {
        Stat::parse(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// The fields after the command name, which may itself hold `)`: state, ppid, pgrp.
    fn parse(stat: &str) -> Option<Stat> {
        let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
        Some(Stat {
            state: fields.next()?.chars().next()?,
            parent: fields.next()?.parse().ok()?,
            group: fields.next()?.parse().ok()?,
        })
    }

    /// Exited and not yet reaped (`Z`), or being torn down (`X`).
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// The kernel's name for the process and whether it is a zombie, from /proc/PID/stat:
/// `PID (NAME) STATE ...`, where the state letter is `Z` for a zombie (`X` for one being torn
/// down).
fn name_and_zombie(stat: &[u8]) -> Option<(String, bool)> {
    // The name may itself hold `(`, `)` or `) Z`: it runs from the first `(` to the last `)`.
    let open = stat.iter().position(|&b| b == b'(')?;
    let close = stat
        .iter()
        .rposition(|&b| b == b')')
        .filter(|&c| c > open)?;
    let name = String::from_utf8_lossy(&stat[open + 1..close]).into_owned();
    Some((name, matches!(stat.get(close + 2), Some(b'Z' | b'X'))))
}

/// Every process of the PID namespace, in the order /proc lists them.
pub fn all() -> Vec<Process> {
    fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| Process::read(e.ok()?.file_name().to_str()?.parse().ok()?))
                .collect()
        })
        .unwrap_or_default()
}

/// A live PID 1 named meshwait with `argv`, for tests of what is read from a command line.
#[cfg(test)]
pub fn meshwait_with(argv: &[&str]) -> Process {
    Process {
        pid: 1,
        comm: "meshwait".into(),
        argv: argv.iter().map(ToString::to_string).collect(),
        zombie: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(argv: &[&str]) -> Process {
        meshwait_with(argv)
    }

    /// Guards the read of the state itself: a real child that has exited and is not yet waited
    /// for is seen as a zombie.
    #[test]
    fn an_unreaped_child_reads_as_a_zombie() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let mut zombie = false;
        for _ in 0..200 {
            zombie = Process::read(pid).is_some_and(|p| p.zombie);
            if zombie {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.wait().unwrap();
        assert!(zombie, "pid {pid} never read as a zombie");
        assert!(!Process::read(std::process::id()).unwrap().zombie);
    }

    #[test]
    fn stat_fields_are_read_after_the_last_parenthesis() {
        let stat = Stat::parse("42 (a) Z (b) S 7 42 42 0 -1").unwrap();
        assert_eq!(
            stat,
            Stat {
                state: 'S',
                parent: 7,
                group: 42
            }
        );
        assert!(!stat.is_zombie());
        assert!(Stat::parse("9 (sh) Z 1 9").unwrap().is_zombie());
        assert!(Stat::parse("9 (sh) X 1 9").unwrap().is_zombie());
        assert_eq!(Stat::parse("9 (sh) S 1"), None, "no group field");
        assert_eq!(Stat::parse("9 sh S 1 9"), None, "no name");
        let own = Stat::read(std::process::id() as i32).unwrap();
        assert_eq!(own.parent, std::os::unix::process::parent_id() as i32);
        // SAFETY: getpgrp only queries.
        assert_eq!(own.group, unsafe { libc::getpgrp() });
    }

    #[test]
    fn zombie_state_is_read_after_the_last_parenthesis() {
        let state_is_zombie = |stat: &[u8]| name_and_zombie(stat).is_some_and(|(_, z)| z);
        assert!(state_is_zombie(b"42 (meshwait) Z 1 42 42 0"));
        assert!(state_is_zombie(b"42 (a) Z (b) X 1"));
        assert!(!state_is_zombie(b"42 (x) Z) S 1 42"));
        assert!(!state_is_zombie(b"42 (meshwait) S 1 42 42 0"));
        assert!(!state_is_zombie(b""));
        // The name as the kernel gives it, parentheses and all.
        assert_eq!(
            name_and_zombie(b"42 (a) Z (b) X 1"),
            Some(("a) Z (b".to_string(), true))
        );
        assert_eq!(
            name_and_zombie(b"7 (meshwait) S 1"),
            Some(("meshwait".to_string(), false))
        );
    }

    /// Guards what a report shows of a neighbour's argv: escape sequences and line breaks
    /// reached the operator's terminal raw, and a long argv was printed whole.
    #[test]
    fn command_lines_are_escaped_and_capped() {
        let hostile = process(&["meshwait", "--", "app", "\u{1b}[2J\n\u{2714} forged"]);
        assert_eq!(
            hostile.command_line(),
            "meshwait -- app \\u{1b}[2J\\n\u{2714} forged"
        );
        let long = "x".repeat(5000);
        let shown = process(&["meshwait", &long]).command_line();
        assert_eq!(shown.chars().count(), untrusted_text::PIECE_MAX + 1);
        assert!(shown.ends_with('…'));
        let mut nameless = process(&[]);
        nameless.comm = "a\u{1b}b".into();
        assert_eq!(nameless.command_line(), "[a\\u{1b}b]");
    }

    /// Guards the read of a neighbour's argv: the whole of it was read, however large.
    #[test]
    fn argv_read_is_capped() {
        let long = "x".repeat(100_000);
        let mut sh = std::process::Command::new("sh")
            .args(["-c", "sleep 5; :", "sh", &long])
            .spawn()
            .unwrap();
        // Right after the exec the new argv may not be readable yet.
        let mut argv = Vec::new();
        for _ in 0..200 {
            argv = read_argv(sh.id()).unwrap();
            if !argv.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = sh.kill();
        let _ = sh.wait();
        assert_eq!(&argv[..3], ["sh", "-c", "sleep 5; :"]);
        let cut = &argv[4];
        assert!(cut.starts_with("xxx"));
        // Cut at 16 KiB: enough for any meshwait command line, and no more.
        assert!(
            (16_000..=16_384).contains(&cut.len()),
            "{} bytes read",
            cut.len()
        );
        assert_eq!(split_argv(b"a\0\0b\0"), vec!["a", "b"]);
    }

    #[test]
    fn reads_this_process() {
        let me = Process::read(std::process::id()).unwrap();
        assert!(!me.comm.is_empty());
        assert!(!me.zombie);
        assert!(me.shares_mounts_with_me().unwrap());
        assert!(all().iter().any(|p| p.pid == std::process::id()));
    }
}
