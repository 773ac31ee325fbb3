//! `meshwait install DIR`: copy this binary into a directory, for the volume-copy pattern.
//!
//! The meshwait image is `FROM scratch` with nothing but `/meshwait`, so an initContainer cannot
//! `cp` it into a shared emptyDir for a container whose image lacks it (a distroless proxy image
//! that needs `meshwait drain` as its preStop hook). The binary copies itself instead.
//!
//! Other containers of the pod may share that volume, and any of them may be hostile. `install`
//! trusts only the path as the operator gave it and the running binary (`/proc/self/exe`). It
//! never follows a symbolic link anywhere in DIR: each component is opened relative to the one
//! before with `O_NOFOLLOW`, so a link planted (or swapped in) on the way is refused, not taken.
//! It never writes outside DIR: every name it creates is relative to DIR's descriptor. It never
//! removes a file it did not create: the copy is written unnamed (`O_TMPFILE`) or under a random
//! name, and a temporary name is removed only while it still names the file `install` wrote.
//! What it cannot prevent is a neighbour that may write into DIR replacing `DIR/meshwait` once
//! it is there, as it could any file in DIR; keeping such neighbours out is the volume's job.

use std::collections::hash_map::RandomState;
use std::ffi::OsStr;
use std::fs::{File, Permissions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{Mode, fstat, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, fsync, linkat, unlinkat};

use crate::exit_code;

/// The copy's name in DIR.
const COPY: &str = "meshwait";

/// Random temporary names tried before giving up. Each is 64 random bits, so a second attempt is
/// already a sign of something wrong; the bound only keeps that from looping forever.
const NAME_ATTEMPTS: usize = 8;

/// The `component` of this module's log lines. Users filter logs by it, so it is fixed here,
/// not taken from the module path, which moves when the code is reorganised.
const LOG: &str = "lifecycle";

/// `meshwait install DIR`: 0 with the copy's path on stdout, or 73 with the reason logged.
pub fn command(dir: &Path) -> i32 {
    match install(dir) {
        Ok(path) => {
            tracing::info!(target: LOG, path = %path.display(), "installed");
            let _ = writeln!(std::io::stdout(), "{}", path.display());
            exit_code::OK
        }
        Err(e) => {
            tracing::error!(target: LOG, "{e}");
            exit_code::CANNOT_CREATE
        }
    }
}

/// How the copy is written before it is renamed into place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Strategy {
    /// An `O_TMPFILE` file, linked under a random name only once complete (so a crash mid-copy
    /// leaves nothing behind); falls back to `Named` where the filesystem or /proc does not allow
    /// it.
    Unnamed,
    /// `O_CREAT|O_EXCL` under a random name.
    Named,
}

/// Installs a copy of the running executable as `DIR/meshwait` and returns that path.
///
/// The copy is written under a temporary name and renamed into place, so a container that starts
/// while an earlier copy is being replaced never executes a half-written file.
pub fn install(dir: &Path) -> io::Result<PathBuf> {
    install_with(dir, Strategy::Unnamed).map(|(copy, _)| copy)
}

/// [`install`], trying `strategy` first; also returns the strategy that wrote the copy.
fn install_with(dir: &Path, strategy: Strategy) -> io::Result<(PathBuf, Strategy)> {
    let dir_fd = open_dir(dir)?;
    // /proc/self/exe, not argv[0]: in a scratch image there is no PATH to resolve a name with.
    let mut source = File::open("/proc/self/exe").map_err(|e| {
        context(
            e,
            "cannot open the running executable",
            Path::new("/proc/self/exe"),
        )
    })?;
    let copy = dir.join(COPY);
    let used = write_copy(dir_fd.as_fd(), &mut source, strategy)
        .map_err(|e| context(e, "cannot write", &copy))?;
    Ok((copy, used))
}

/// Opens DIR, creating what is missing, without following a symbolic link anywhere in it.
///
/// Component by component rather than one `open`: `O_NOFOLLOW` guards only a path's last
/// component, and each directory is then reached through its parent's descriptor, so nothing
/// swapped in behind an already-opened component changes where the walk goes.
fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    let mut walked = PathBuf::new();
    // Every directory opened so far, the last one current; empty while the walk is still at the
    // working directory (a relative DIR).
    let mut opened: Vec<OwnedFd> = Vec::new();
    for component in dir.components() {
        walked.push(component);
        match component {
            // The root is the operator's to trust, and it cannot be a link.
            Component::RootDir => opened.push(
                openat(
                    AT_FDCWD,
                    "/",
                    OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| context(e.into(), "cannot open", &walked))?,
            ),
            // `..` goes back to the directory the walk came from, as the operator wrote it. Asking
            // the kernel for the parent instead would follow wherever a neighbour had moved the
            // directory since it was opened. Only a `..` above where the walk began (`../x`, or
            // `/..`, which is `/`) is the kernel's.
            Component::ParentDir if opened.len() > usize::from(dir.has_root()) => {
                opened.pop();
            }
            Component::ParentDir if dir.has_root() => {}
            other => {
                let parent = opened.last().map_or(AT_FDCWD, |fd| fd.as_fd());
                let next = open_component(parent, other.as_os_str(), &walked)?;
                opened.push(next);
            }
        }
    }
    match opened.pop() {
        Some(fd) => Ok(fd),
        // An empty DIR is the working directory, which is where `dir.join(COPY)` points too.
        None => open_component(AT_FDCWD, OsStr::new("."), Path::new(".")),
    }
}

/// Opens directory `name` under `parent`, creating it if missing; `walked` names it in errors.
fn open_component(parent: BorrowedFd<'_>, name: &OsStr, walked: &Path) -> io::Result<OwnedFd> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut created = false;
    loop {
        match openat(parent, name, flags, Mode::empty()) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) if !created => {
                match mkdirat(parent, name, Mode::from_bits_truncate(0o755)) {
                    // EEXIST: someone else made it meanwhile; opening it checks what it is.
                    Ok(()) | Err(Errno::EEXIST) => created = true,
                    Err(e) => return Err(context(e.into(), "cannot create", walked)),
                }
            }
            // O_NOFOLLOW refuses a link with ELOOP, or ENOTDIR as O_DIRECTORY is checked first on
            // some kernels; a file in the way is ENOTDIR too, so look at which it is.
            Err(e @ (Errno::ELOOP | Errno::ENOTDIR)) if is_symlink(parent, name) => {
                return Err(io::Error::new(
                    io::Error::from(e).kind(),
                    format!(
                        "{} is a symbolic link: meshwait install follows no links in DIR; give \
                         the real path",
                        walked.display()
                    ),
                ));
            }
            Err(e) => return Err(context(e.into(), "cannot open", walked)),
        }
    }
}

fn is_symlink(parent: BorrowedFd<'_>, name: &OsStr) -> bool {
    fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK)
}

/// Writes the copy into `dir` and renames it to `meshwait`; returns the strategy that did it.
fn write_copy(dir: BorrowedFd<'_>, source: &mut File, strategy: Strategy) -> io::Result<Strategy> {
    if strategy == Strategy::Unnamed {
        if write_unnamed(dir, source)? {
            return Ok(Strategy::Unnamed);
        }
        source.rewind()?;
    }
    write_named(dir, source)?;
    Ok(Strategy::Named)
}

/// The `Unnamed` strategy; false (with nothing left in `dir`) where it is not available.
fn write_unnamed(dir: BorrowedFd<'_>, source: &mut File) -> io::Result<bool> {
    let flags = OFlag::O_TMPFILE | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
    let mut out = match openat(dir, ".", flags, Mode::from_bits_truncate(0o755)) {
        Ok(fd) => File::from(fd),
        // EISDIR: a kernel older than O_TMPFILE sees only the O_DIRECTORY bit it includes.
        Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    fill(source, &mut out)?;
    // AT_EMPTY_PATH would link the descriptor itself but needs CAP_DAC_READ_SEARCH; the /proc
    // link needs nothing.
    let proc_link = format!("/proc/self/fd/{}", out.as_raw_fd());
    let name = match under_random_name(|name| {
        linkat(
            AT_FDCWD,
            proc_link.as_str(),
            dir,
            name,
            AtFlags::AT_SYMLINK_FOLLOW,
        )
    }) {
        Ok((name, ())) => name,
        // Full, read-only or failing: the named way would fail the same.
        Err(e @ (Errno::ENOSPC | Errno::EDQUOT | Errno::EROFS | Errno::EIO | Errno::EEXIST)) => {
            return Err(e.into());
        }
        // No /proc (ENOENT), or a sandbox's /proc that refuses the link (EPERM, EACCES): the
        // unnamed file vanishes when `out` is closed, and the named way needs no /proc.
        Err(_) => return Ok(false),
    };
    publish(dir, &name, &out)?;
    Ok(true)
}

/// The `Named` strategy.
fn write_named(dir: BorrowedFd<'_>, source: &mut File) -> io::Result<()> {
    let (name, fd) = under_random_name(|name| create_new(dir, name))?;
    let mut out = File::from(fd);
    if let Err(e) = fill(source, &mut out) {
        discard(dir, &name, &out);
        return Err(e);
    }
    publish(dir, &name, &out)
}

/// Creates `name` in `dir`, failing with EEXIST on anything already there, a link included: even
/// a neighbour that guessed the random name gets nothing written where it points.
fn create_new(dir: BorrowedFd<'_>, name: &str) -> nix::Result<OwnedFd> {
    let flags =
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
    openat(dir, name, flags, Mode::from_bits_truncate(0o755))
}

/// Copies the running binary into `out`, executable by all and on disk.
fn fill(source: &mut File, out: &mut File) -> io::Result<()> {
    io::copy(source, out)?;
    // The mode given at creation is cut down by the umask; other containers' users must be able
    // to run the copy.
    out.set_permissions(Permissions::from_mode(0o755))?;
    out.sync_all()
}

/// Calls `create` with fresh random temporary names until one is not taken.
fn under_random_name<T>(
    mut create: impl FnMut(&str) -> nix::Result<T>,
) -> nix::Result<(String, T)> {
    for _ in 0..NAME_ATTEMPTS {
        let name = random_name();
        match create(&name) {
            Ok(created) => return Ok((name, created)),
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Errno::EEXIST)
}

/// A temporary name no neighbour can plant ahead of time.
fn random_name() -> String {
    // RandomState's SipHash keys come from the OS's random source, so even the hash of nothing
    // is unguessable; no crate needed.
    let bits = RandomState::new().build_hasher().finish();
    format!(".meshwait.{bits:016x}.partial")
}

/// Renames the complete copy at `name` to `meshwait`, durably; on failure removes `name` if it
/// is still ours.
fn publish(dir: BorrowedFd<'_>, name: &str, ours: &File) -> io::Result<()> {
    // renameat replaces whatever `meshwait` is, a planted link included, without following it.
    if let Err(e) = renameat(dir, name, dir, COPY) {
        discard(dir, name, ours);
        return Err(e.into());
    }
    match fsync(dir) {
        // Some filesystems cannot sync a directory; the copy is in place all the same.
        Ok(()) | Err(Errno::EINVAL) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes the temporary `name` from `dir` only if it still names the file `ours`: a neighbour
/// may have moved it and put something of its own there.
fn discard(dir: BorrowedFd<'_>, name: &str, ours: &File) {
    let (Ok(there), Ok(mine)) = (
        fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW),
        fstat(ours),
    ) else {
        return;
    };
    // A swap between this check and the unlink would lose only a file the neighbour put under
    // our random name on purpose, never one that was there before install.
    if (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino) {
        let _ = unlinkat(dir, name, UnlinkatFlags::NoRemoveDir);
    }
}

fn context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const BOTH: [Strategy; 2] = [Strategy::Unnamed, Strategy::Named];

    fn scratch(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("meshwait-install-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn assert_is_the_running_binary(copy: &Path) {
        let meta = fs::symlink_metadata(copy).unwrap();
        assert!(meta.file_type().is_file(), "{copy:?} is not a regular file");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
        assert_eq!(fs::read(copy).unwrap(), fs::read("/proc/self/exe").unwrap());
    }

    /// The name the old code used; a neighbour could plant it before the initContainer ran.
    fn old_predictable_name() -> String {
        format!(".meshwait.{}.partial", std::process::id())
    }

    #[test]
    fn copies_itself_executable_and_replaces_an_older_copy() {
        let dir = scratch("unit");
        let nested = dir.join("a/b");
        let first = install(&nested).unwrap();
        assert_eq!(first, nested.join("meshwait"));
        assert_is_the_running_binary(&first);
        fs::write(&first, b"older").unwrap();
        // `.` and `..` are no links: they are walked like any directory.
        let roundabout = dir.join("a/./b/../b");
        assert_eq!(install(&roundabout).unwrap(), roundabout.join("meshwait"));
        assert_is_the_running_binary(&first);
        assert_eq!(names(&nested), ["meshwait"], "temporary file left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// `..` goes back along the walk, as written, and `/..` is `/`: the copy lands where the path
    /// says, whatever was created on the way.
    #[test]
    fn parent_components_go_back_along_the_walk() {
        let dir = scratch("parents");
        install(&dir.join("p/new/../q")).unwrap();
        assert_eq!(names(&dir.join("p")), ["new", "q"]);
        assert_is_the_running_binary(&dir.join("p/q/meshwait"));
        let from_root = Path::new("/..")
            .join(dir.strip_prefix("/").unwrap())
            .join("r");
        install(&from_root).unwrap();
        assert_is_the_running_binary(&dir.join("r/meshwait"));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Guards the named temporary against a neighbour that guessed its name: whatever is there,
    /// a file or a link, is left as it is and nothing is written through it.
    #[test]
    fn a_temporary_name_already_taken_is_refused_not_opened() {
        let dir = scratch("taken");
        let fd = open_dir(&dir).unwrap();
        fs::write(dir.join("file"), b"theirs").unwrap();
        std::os::unix::fs::symlink(dir.join("target"), dir.join("link")).unwrap();
        for name in ["file", "link"] {
            assert_eq!(
                create_new(fd.as_fd(), name).err(),
                Some(Errno::EEXIST),
                "{name}"
            );
        }
        assert_eq!(fs::read(dir.join("file")).unwrap(), b"theirs");
        assert!(!dir.join("target").exists(), "created through the link");
        assert!(create_new(fd.as_fd(), "fresh").is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn both_strategies_write_a_byte_identical_executable_copy() {
        let dir = scratch("strategies");
        let probe = open_dir(&dir).unwrap();
        let tmpfile = openat(
            &probe,
            ".",
            OFlag::O_TMPFILE | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .is_ok();
        for strategy in BOTH {
            let inst = dir.join(format!("{strategy:?}"));
            let (copy, used) = install_with(&inst, strategy).unwrap();
            // Where the filesystem has no O_TMPFILE, Unnamed falls back; the test says so rather
            // than pass for a path it did not take.
            let expected = if tmpfile { strategy } else { Strategy::Named };
            assert_eq!(used, expected, "O_TMPFILE available: {tmpfile}");
            assert_is_the_running_binary(&copy);
            assert_eq!(names(&inst), ["meshwait"], "{strategy:?} left a temporary");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_in_the_way_is_an_error_naming_the_path() {
        let dir = scratch("file");
        let file = dir.join("file");
        fs::write(&file, b"x").unwrap();
        for target in [file.clone(), file.join("sub")] {
            let e = install(&target).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with(&format!("cannot open {}: ", file.display())),
                "{e}"
            );
        }
        assert_eq!(fs::read(&file).unwrap(), b"x");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn entries_planted_under_the_old_predictable_name_are_left_alone() {
        let dir = scratch("planted");
        let planted = dir.join(old_predictable_name());
        fs::write(&planted, b"a neighbour's").unwrap();
        for strategy in BOTH {
            install_with(&dir, strategy).unwrap();
            assert_eq!(fs::read(&planted).unwrap(), b"a neighbour's");
            assert_eq!(names(&dir), [old_predictable_name(), "meshwait".into()]);
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_link_as_dir_or_as_a_parent_is_refused_naming_it() {
        let dir = scratch("link");
        let elsewhere = dir.join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        let link = dir.join("inst2");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        for target in [link.clone(), link.join("sub")] {
            let e = install(&target).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "{} is a symbolic link: meshwait install follows no links in DIR; give the \
                     real path",
                    link.display()
                )
            );
        }
        assert!(names(&elsewhere).is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_link_planted_as_the_copy_is_replaced_not_written_through() {
        let dir = scratch("target-link");
        let victim = dir.join("victim");
        fs::write(&victim, b"not meshwait").unwrap();
        for strategy in BOTH {
            let inst = dir.join(format!("{strategy:?}"));
            fs::create_dir(&inst).unwrap();
            std::os::unix::fs::symlink(&victim, inst.join("meshwait")).unwrap();
            let (copy, _) = install_with(&inst, strategy).unwrap();
            assert_eq!(fs::read(&victim).unwrap(), b"not meshwait");
            assert_is_the_running_binary(&copy);
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_rename_leaves_no_temporary_and_spares_a_neighbours_files() {
        let dir = scratch("rename-fails");
        // A non-empty directory where the copy goes: the rename fails after the copy is written.
        fs::create_dir(dir.join("meshwait")).unwrap();
        fs::write(dir.join("meshwait/keep"), b"").unwrap();
        let planted = [
            old_predictable_name(),
            ".meshwait.0123456789abcdef.partial".into(),
        ];
        for name in &planted {
            fs::write(dir.join(name), b"a neighbour's").unwrap();
        }
        let mut expected = planted.to_vec();
        expected.push("meshwait".into());
        expected.sort();
        for strategy in BOTH {
            let e = install_with(&dir, strategy).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with(&format!("cannot write {}", dir.join("meshwait").display())),
                "{e}"
            );
            assert_eq!(names(&dir), expected, "{strategy:?}");
            for name in &planted {
                assert_eq!(fs::read(dir.join(name)).unwrap(), b"a neighbour's");
            }
        }
        assert_eq!(names(&dir.join("meshwait")), ["keep"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_temporary_name_a_neighbour_took_over_is_not_removed() {
        let dir = scratch("discard");
        let dir_fd = open_dir(&dir).unwrap();
        let create = |name: &str| {
            let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
            File::from(openat(&dir_fd, name, flags, Mode::from_bits_truncate(0o600)).unwrap())
        };
        let ours = create("ours");
        discard(dir_fd.as_fd(), "ours", &ours);
        assert!(names(&dir).is_empty(), "our own temporary was kept");
        // The neighbour moves our file away and puts its own under the name.
        let ours = create("ours");
        fs::rename(dir.join("ours"), dir.join("moved")).unwrap();
        fs::write(dir.join("ours"), b"a neighbour's").unwrap();
        discard(dir_fd.as_fd(), "ours", &ours);
        assert_eq!(fs::read(dir.join("ours")).unwrap(), b"a neighbour's");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporary_names_are_fresh_each_time() {
        let (a, b) = (random_name(), random_name());
        assert_ne!(a, b);
        for name in [a, b] {
            let hex = name
                .strip_prefix(".meshwait.")
                .and_then(|rest| rest.strip_suffix(".partial"))
                .unwrap();
            assert_eq!(hex.len(), 16, "{name}");
            assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
        }
    }
}
