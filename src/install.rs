//! `meshwait install DIR`: copy this binary into a directory, for the volume-copy pattern.
//!
//! The meshwait image is `FROM scratch` with nothing but `/meshwait`, so an initContainer cannot
//! `cp` it into a shared emptyDir for a container whose image lacks it (a distroless proxy image
//! that needs `meshwait drain` as its preStop hook). The binary copies itself instead.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Installs a copy of the running executable as `DIR/meshwait` and returns that path.
///
/// The copy is written under a temporary name and renamed into place, so a container that starts
/// while an earlier copy is being replaced never executes a half-written file.
pub fn install(dir: &Path) -> io::Result<PathBuf> {
    fs::create_dir_all(dir).map_err(|e| context(e, "cannot create", dir))?;
    // /proc/self/exe, not argv[0]: in a scratch image there is no PATH to resolve a name with.
    let mut source = File::open("/proc/self/exe").map_err(|e| {
        context(
            e,
            "cannot open the running executable",
            Path::new("/proc/self/exe"),
        )
    })?;
    let target = dir.join("meshwait");
    let partial = dir.join(format!(".meshwait.{}.partial", std::process::id()));
    let result = (|| {
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(&partial)?;
        io::copy(&mut source, &mut out)?;
        // The mode given at creation is cut down by the umask; other containers' users must be
        // able to run the copy.
        out.set_permissions(Permissions::from_mode(0o755))?;
        out.sync_all()?;
        fs::rename(&partial, &target)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&partial);
        return Err(context(e, "cannot write", &target));
    }
    Ok(target)
}

fn context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_itself_executable_and_replaces_an_older_copy() {
        let dir =
            std::env::temp_dir().join(format!("meshwait-install-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let nested = dir.join("a/b");
        let first = install(&nested).unwrap();
        assert_eq!(first, nested.join("meshwait"));
        let expected = fs::read("/proc/self/exe").unwrap();
        assert_eq!(fs::read(&first).unwrap(), expected);
        assert_eq!(
            fs::metadata(&first).unwrap().permissions().mode() & 0o777,
            0o755
        );
        fs::write(&first, b"older").unwrap();
        install(&nested).unwrap();
        assert_eq!(fs::read(&first).unwrap(), expected);
        let leftovers: Vec<_> = fs::read_dir(&nested).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary file left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_in_the_way_is_an_error_naming_the_path() {
        let file =
            std::env::temp_dir().join(format!("meshwait-install-file-{}", std::process::id()));
        fs::write(&file, b"x").unwrap();
        let e = install(&file).unwrap_err();
        assert!(e.to_string().contains(&file.display().to_string()), "{e}");
        fs::remove_file(&file).unwrap();
    }
}
