//! Why the app could not be started, in words that point at the fix.
//!
//! execve reports ENOENT both for a missing file and for a file that exists but names something
//! missing: the interpreter on a script's `#!` line, or the dynamic loader in an ELF binary's
//! PT_INTERP (a glibc binary copied into a scratch or distroless image). The second kind is the
//! most common first failure of a new image, and "command not found" for a file that is right
//! there sends people looking in the wrong place, so the file is read to say which it was.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::exit_code;

/// Why the app could not be started, with the exit code that reports it.
#[derive(Debug)]
pub struct LaunchError {
    pub code: i32,
    pub message: String,
}

pub fn explain(program: &OsStr, e: &io::Error) -> LaunchError {
    let shown = program.to_string_lossy();
    let found = locate(program);
    if e.kind() == io::ErrorKind::NotFound {
        if let Some(missing) = found.as_deref().and_then(missing_part) {
            return LaunchError {
                code: exit_code::NOT_FOUND,
                message: format!("cannot start {shown}: {missing}"),
            };
        }
    }
    let (code, what) = match (e.kind(), e.raw_os_error()) {
        (io::ErrorKind::NotFound, _) => (exit_code::NOT_FOUND, "command not found".to_string()),
        _ if found.as_deref().is_some_and(Path::is_dir) => {
            (exit_code::CANNOT_EXECUTE, "is a directory".to_string())
        }
        (io::ErrorKind::PermissionDenied, _) => (
            exit_code::CANNOT_EXECUTE,
            "permission denied (not executable, or on a noexec mount)".to_string(),
        ),
        (_, Some(libc::ENOEXEC)) => (
            exit_code::CANNOT_EXECUTE,
            "not an executable format (a script without a #! line, or a binary for another \
             architecture)"
                .to_string(),
        ),
        _ => (exit_code::CANNOT_EXECUTE, "cannot execute".to_string()),
    };
    LaunchError {
        code,
        message: format!("{what}: {shown} ({e})"),
    }
}

/// The file execve would have run: the program itself when it has a slash, else the first match
/// on PATH, as execvp searches it.
fn locate(program: &OsStr) -> Option<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        let path = PathBuf::from(program);
        return path.symlink_metadata().is_ok().then_some(path);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|path| path.metadata().is_ok())
}

/// For a file that exists although execve said ENOENT: what it needs that is not there.
fn missing_part(path: &Path) -> Option<String> {
    let mut file = File::open(path).ok()?;
    let mut head = [0u8; 256];
    let n = read_up_to(&mut file, &mut head).ok()?;
    let head = &head[..n];
    if let Some(line) = head.strip_prefix(b"#!") {
        let line = line.split(|&b| b == b'\n').next().unwrap_or(line);
        let interpreter = line
            .trim_ascii_start()
            .split(|b| *b == b' ' || *b == b'\t')
            .next()?;
        let cr = interpreter.ends_with(b"\r");
        let interpreter = String::from_utf8_lossy(interpreter.trim_ascii_end()).into_owned();
        if cr {
            return Some(format!(
                "its #! line ends in a carriage return (Windows line endings), so the \
                 interpreter looked for is \"{interpreter}\\r\"; convert the script to LF line \
                 endings"
            ));
        }
        if !Path::new(&interpreter).exists() {
            return Some(format!(
                "its #! line names the interpreter {interpreter}, which does not exist here"
            ));
        }
        return None;
    }
    let loader = elf_interpreter(&mut file, head)?;
    (!Path::new(&loader).exists()).then(|| {
        format!(
            "it is dynamically linked and its loader {loader} does not exist here (a binary \
             built against a C library this image lacks: build it statically, or use a base \
             image with that C library)"
        )
    })
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// PT_INTERP of an ELF file (32 or 64 bit, either byte order), if it has one.
fn elf_interpreter(file: &mut File, head: &[u8]) -> Option<String> {
    const PT_INTERP: u32 = 3;
    if head.len() < 52 || &head[..4] != b"\x7fELF" {
        return None;
    }
    let wide = match head[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let big = match head[5] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let u16_at = |b: &[u8], at: usize| -> Option<u64> {
        let v: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(u64::from(if big {
            u16::from_be_bytes(v)
        } else {
            u16::from_le_bytes(v)
        }))
    };
    let u32_at = |b: &[u8], at: usize| -> Option<u64> {
        let v: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(u64::from(if big {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        }))
    };
    let u64_at = |b: &[u8], at: usize| -> Option<u64> {
        let v: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
        Some(if big {
            u64::from_be_bytes(v)
        } else {
            u64::from_le_bytes(v)
        })
    };
    let word = |b: &[u8], at: usize| if wide { u64_at(b, at) } else { u32_at(b, at) };
    let (phoff, phentsize, phnum) = if wide {
        (u64_at(head, 32)?, u16_at(head, 54)?, u16_at(head, 56)?)
    } else {
        (u32_at(head, 28)?, u16_at(head, 42)?, u16_at(head, 44)?)
    };
    // A real binary has a dozen headers; the cap keeps a hostile file from costing anything.
    if !(32..=64).contains(&phentsize) || phnum > 256 {
        return None;
    }
    let mut table = vec![0u8; (phentsize * phnum) as usize];
    file.seek(SeekFrom::Start(phoff)).ok()?;
    file.read_exact(&mut table).ok()?;
    let header = table
        .chunks(phentsize as usize)
        .find(|h| u32_at(h, 0) == Some(u64::from(PT_INTERP)))?;
    let (offset, size) = if wide {
        (word(header, 8)?, word(header, 32)?)
    } else {
        (word(header, 4)?, word(header, 16)?)
    };
    if size == 0 || size > 4096 {
        return None;
    }
    let mut name = vec![0u8; size as usize];
    file.seek(SeekFrom::Start(offset)).ok()?;
    file.read_exact(&mut name).ok()?;
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Some(String::from_utf8_lossy(&name[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loader_of_a_dynamic_binary_is_read_from_its_elf_header() {
        // Whatever this test binary was linked with, its loader exists (it is running).
        let me = std::env::current_exe().unwrap();
        let mut file = File::open(&me).unwrap();
        let mut head = [0u8; 256];
        let n = read_up_to(&mut file, &mut head).unwrap();
        if let Some(loader) = elf_interpreter(&mut file, &head[..n]) {
            assert!(
                loader.starts_with('/') && Path::new(&loader).exists(),
                "{loader}"
            );
        }
        assert_eq!(missing_part(&me), None);
    }

    #[test]
    fn garbage_is_no_elf() {
        let dir = std::env::temp_dir().join(format!("meshwait-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("garbage");
        let mut bytes = b"\x7fELF\x02\x01".to_vec();
        bytes.resize(300, 0xff);
        std::fs::write(&path, &bytes).unwrap();
        let mut file = File::open(&path).unwrap();
        assert_eq!(elf_interpreter(&mut file, &bytes[..256]), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
