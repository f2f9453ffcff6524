//! The files options name — access rule lists, relay targets, SOCKS users, SNI routes,
//! quotes, TLS certificates and keys — read whole, as each start and each SIGHUP reload
//! reads them, within bounds a mistaken path cannot break: a regular file only (a FIFO
//! would hold the reload, and with it the runtime thread, until something wrote to it; a
//! device such as `/dev/zero` never ends), at most [`MAX_OPTION_FILE`] bytes, and without
//! the UTF-8 byte order mark an editor may put first (it would be part of the first line).

use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The largest file an option may name: 16 MiB, far above any real list of rules, targets
/// or users, and far below what would exhaust memory.
pub const MAX_OPTION_FILE: u64 = 16 << 20;

/// The bytes of the file at `path` (see the module docs).
///
/// # Errors
///
/// The file cannot be opened or read; it is not a regular file (`InvalidInput`); it is larger
/// than [`MAX_OPTION_FILE`] (`FileTooLarge`).
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("rules");
/// std::fs::write(&path, "\u{feff}10.0.0.0/8\n")?;
/// assert_eq!(socketkit::option_file::read(&path)?, b"10.0.0.0/8\n");
/// assert!(socketkit::option_file::read(std::path::Path::new("/dev/zero")).is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    // Non-blocking, so that the open of a FIFO with no writer returns at once, to be
    // refused below rather than waited on.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_OPTION_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_OPTION_FILE {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("larger than {} MiB", MAX_OPTION_FILE >> 20),
        ));
    }
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    Ok(bytes)
}

/// [`read`], as UTF-8 text.
///
/// # Errors
///
/// As [`read`]; text that is not UTF-8 is `InvalidData`, carrying a [`NotText`] that says
/// on which line ([`not_text_line`]).
pub fn read_text(path: &Path) -> io::Result<String> {
    String::from_utf8(read(path)?).map_err(|err| {
        let valid = &err.as_bytes()[..err.utf8_error().valid_up_to()];
        let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
        io::Error::new(io::ErrorKind::InvalidData, NotText { line })
    })
}

/// Text that is not UTF-8, from its first line that is not (a file of thousands of rules
/// must say where to look).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("line {line} is not UTF-8 text")]
pub struct NotText {
    /// The line, from 1.
    pub line: usize,
}

/// The line of a [`read_text`] error that is [`NotText`], if it is one.
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("rules");
/// std::fs::write(&path, b"10.0.0.0/8\n\xff\n")?;
/// let err = socketkit::option_file::read_text(&path).unwrap_err();
/// assert_eq!(socketkit::option_file::not_text_line(&err), Some(2));
/// assert_eq!(err.to_string(), "line 2 is not UTF-8 text");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn not_text_line(err: &io::Error) -> Option<usize> {
    let inner = err.get_ref()?.downcast_ref::<NotText>()?;
    Some(inner.line)
}
