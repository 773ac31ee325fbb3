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
    let head = first_bytes(&mut file).ok()?;
    let head = head.as_slice();
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

/// Enough of the file for a `#!` line or an ELF header.
fn first_bytes(file: &mut File) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(256);
    file.by_ref().take(256).read_to_end(&mut head)?;
    Ok(head)
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
        let head = first_bytes(&mut file).unwrap();
        if let Some(loader) = elf_interpreter(&mut file, &head) {
            assert!(
                loader.starts_with('/') && Path::new(&loader).exists(),
                "{loader}"
            );
        }
        assert_eq!(missing_part(&me), None);
    }

    /// A minimal ELF file: a header, a PT_LOAD, then (unless `interp` is None) a PT_INTERP
    /// naming `interp`, its name NUL-terminated or not.
    struct Elf {
        wide: bool,
        big: bool,
        interp: Option<&'static [u8]>,
    }

    impl Elf {
        fn new(wide: bool, big: bool) -> Elf {
            Elf {
                wide,
                big,
                interp: Some(b"/lib/ld-test.so.1\0"),
            }
        }

        fn bytes(&self) -> Vec<u8> {
            let (ehsize, phoff) = if self.wide {
                (64usize, 64usize)
            } else {
                (52, 52)
            };
            let headers = if self.interp.is_some() { 2 } else { 1 };
            let phentsize: usize = if self.wide { 56 } else { 32 };
            let table = phentsize * headers;
            let name_at = phoff + table;
            let name = self.interp.unwrap_or(b"");
            let mut b = vec![0u8; name_at + name.len()];
            b[..4].copy_from_slice(b"\x7fELF");
            b[4] = if self.wide { 2 } else { 1 };
            b[5] = if self.big { 2 } else { 1 };
            b[6] = 1;
            let put = |b: &mut Vec<u8>, at: usize, v: u64, width: usize| {
                let bytes = v.to_be_bytes();
                let field = &bytes[8 - width..];
                for (i, byte) in field.iter().enumerate() {
                    let to = if self.big { at + i } else { at + width - 1 - i };
                    b[to] = *byte;
                }
            };
            let word = if self.wide { 8 } else { 4 };
            let phnum = headers as u64;
            if self.wide {
                put(&mut b, 32, phoff as u64, 8);
                put(&mut b, 52, ehsize as u64, 2);
                put(&mut b, 54, phentsize as u64, 2);
                put(&mut b, 56, phnum, 2);
            } else {
                put(&mut b, 28, phoff as u64, 4);
                put(&mut b, 40, ehsize as u64, 2);
                put(&mut b, 42, phentsize as u64, 2);
                put(&mut b, 44, phnum, 2);
            }
            // First a PT_LOAD (1), so the PT_INTERP has to be found, not just taken.
            put(&mut b, phoff, 1, 4);
            if let Some(name) = self.interp {
                let h = phoff + phentsize;
                put(&mut b, h, 3, 4);
                let (offset_at, size_at) = if self.wide { (8, 32) } else { (4, 16) };
                put(&mut b, h + offset_at, name_at as u64, word);
                put(&mut b, h + size_at, name.len() as u64, word);
                b[name_at..].copy_from_slice(name);
            }
            b
        }
    }

    fn interpreter_of(bytes: &[u8]) -> Option<String> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!("meshwait-elf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(NEXT.fetch_add(1, Ordering::Relaxed).to_string());
        std::fs::write(&path, bytes).unwrap();
        let mut file = File::open(&path).unwrap();
        let head = first_bytes(&mut file).unwrap();
        let found = elf_interpreter(&mut file, &head);
        let _ = std::fs::remove_file(&path);
        found
    }

    #[test]
    fn every_class_and_byte_order_is_read() {
        for wide in [false, true] {
            for big in [false, true] {
                let elf = Elf::new(wide, big);
                assert_eq!(
                    interpreter_of(&elf.bytes()).as_deref(),
                    Some("/lib/ld-test.so.1"),
                    "wide {wide} big {big}"
                );
                // The name need not end in a NUL.
                let unterminated = Elf {
                    interp: Some(b"/lib/ld-x.so"),
                    ..Elf::new(wide, big)
                };
                assert_eq!(
                    interpreter_of(&unterminated.bytes()).as_deref(),
                    Some("/lib/ld-x.so")
                );
                // A static binary has no PT_INTERP.
                let statik = Elf {
                    interp: None,
                    ..Elf::new(wide, big)
                };
                assert_eq!(interpreter_of(&statik.bytes()), None);
            }
        }
    }

    #[test]
    fn malformed_headers_give_no_loader() {
        let good = Elf::new(true, false).bytes();
        assert!(interpreter_of(&good).is_some());
        let mut bad_class = good.clone();
        bad_class[4] = 3;
        assert_eq!(interpreter_of(&bad_class), None);
        let mut bad_order = good.clone();
        bad_order[5] = 0;
        assert_eq!(interpreter_of(&bad_order), None);
        let mut bad_magic = good.clone();
        bad_magic[1] = b'X';
        assert_eq!(interpreter_of(&bad_magic), None);
        // Shorter than the smallest ELF header, down to shorter than the magic.
        assert_eq!(interpreter_of(&good[..51]), None);
        assert_eq!(interpreter_of(&good[..2]), None);
        // ELF64 little-endian: e_phentsize at 54, e_phnum at 56.
        let mut tiny_entries = good.clone();
        tiny_entries[54..56].copy_from_slice(&16u16.to_le_bytes());
        assert_eq!(interpreter_of(&tiny_entries), None);
        let mut too_many = good.clone();
        too_many[56..58].copy_from_slice(&300u16.to_le_bytes());
        assert_eq!(interpreter_of(&too_many), None);
        // A hostile size is refused before anything is allocated for it (the PT_INTERP entry is
        // the second, at 64 + 56; its p_filesz at +32).
        let mut huge_name = good.clone();
        huge_name[152..160].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert_eq!(interpreter_of(&huge_name), None);
        // A table that runs past the end of the file.
        let mut past_the_end = good.clone();
        past_the_end[56..58].copy_from_slice(&200u16.to_le_bytes());
        assert_eq!(interpreter_of(&past_the_end), None);
        let empty_name = Elf {
            interp: Some(b""),
            ..Elf::new(false, false)
        };
        assert_eq!(interpreter_of(&empty_name.bytes()), None);
    }

    #[test]
    fn a_missing_loader_or_interpreter_is_named() {
        let dir = std::env::temp_dir().join(format!("meshwait-missing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let elf = dir.join("elf");
        std::fs::write(&elf, Elf::new(true, false).bytes()).unwrap();
        let said = missing_part(&elf).unwrap();
        assert!(said.contains("loader /lib/ld-test.so.1"), "{said}");
        let script = dir.join("script");
        std::fs::write(&script, b"#!  /no/such/sh -e\n").unwrap();
        let said = missing_part(&script).unwrap();
        assert!(said.contains("interpreter /no/such/sh,"), "{said}");
        std::fs::write(&script, b"#!/bin/sh\n").unwrap();
        assert_eq!(missing_part(&script), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
