//! A file read and written as if it were blocking, whatever its `O_NONBLOCK` says.
//!
//! Standard input and output are shared with the parent, which may have left them
//! non-blocking (a program that set the flag on its terminal or on a pipe it hands down,
//! node's child stdio). The flag belongs to the open file description, which the parent and
//! every other process holding it share, so it is not ours to clear: a read or write refused
//! with `EAGAIN` waits for the file with `poll(2)` and is tried again, as nc does. A file in
//! blocking mode never sees the wait: its calls cost what they cost before.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Arc;

use crate::net;

/// A file whose reads and writes wait, with `poll(2)`, when its non-blocking mode refuses
/// them (`EAGAIN`), and are then tried again: for standard input and output, which a parent
/// may have made non-blocking.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use std::os::unix::net::UnixStream;
/// use socketkit::client::WaitingFile;
/// let (ours, mut theirs) = UnixStream::pair()?;
/// ours.set_nonblocking(true)?; // as a parent may leave standard input
/// let mut input = WaitingFile::new(std::fs::File::from(std::os::fd::OwnedFd::from(ours)));
/// let writer = std::thread::spawn(move || {
///     std::thread::sleep(std::time::Duration::from_millis(50));
///     theirs.write_all(b"late")
/// });
/// let mut got = [0u8; 4];
/// input.read_exact(&mut got)?; // waits, where the file itself answers WouldBlock
/// assert_eq!(&got, b"late");
/// writer.join().unwrap()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct WaitingFile(Arc<File>);

impl WaitingFile {
    /// Wraps `file`, leaving its mode as it is.
    pub fn new(file: File) -> WaitingFile {
        WaitingFile(Arc::new(file))
    }

    /// The file, shared: open for as long as this or the clone lives, to be asked about
    /// without a descriptor of its own (an input's `waiting`).
    pub(crate) fn shared(&self) -> Arc<File> {
        Arc::clone(&self.0)
    }
}

impl Read for WaitingFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match (&*self.0).read(buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    net::wait_readable(self.0.as_raw_fd(), None)?;
                }
                done => return done,
            }
        }
    }
}

impl Write for WaitingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match (&*self.0).write(buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    net::wait_writable(self.0.as_raw_fd(), None)?;
                }
                done => return done,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self.0).flush()
    }
}

impl AsFd for WaitingFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
