//! Where a bridge writes what the peer sends, and how it learns that nobody reads it any
//! more.
//!
//! A reader that goes away (`| head -1`) is seen at once by a write, which fails with
//! `EPIPE`; but while the peer is quiet there is nothing to write. A pipe's write end
//! reports `POLLERR` once its reader is gone, and a socket `POLLHUP` once its peer has hung
//! up, so the bridges watch such an output in the wait they make for the peer anyway
//! ([`Output::watching`]) and end as a failed write would have ended them: quietly, the output
//! closed. A regular file or a terminal never reports it, and is not watched.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use super::input::CHUNK;
use super::waiting_file::WaitingFile;
use crate::net;

/// Where a bridge writes what the peer sends: any writer, or a file, which is written with
/// `splice(2)` — no copy through user space — when it is a blocking pipe.
pub struct Output<'a> {
    pub(super) writer: Box<dyn Write + Send + 'a>,
    /// The file to splice into, when it is a blocking pipe.
    pub(super) pipe: Option<RawFd>,
    /// A pipe or socket whose reader leaving ends the bridge, even with nothing to write.
    pub(super) watch: Option<OwnedFd>,
}

impl std::fmt::Debug for Output<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("pipe", &self.pipe)
            .field("watch", &self.watch)
            .finish_non_exhaustive()
    }
}

impl<'a> Output<'a> {
    /// Writes through `writer`.
    pub fn writer(writer: impl Write + Send + 'a) -> Output<'a> {
        Output {
            writer: Box::new(writer),
            pipe: None,
            watch: None,
        }
    }

    pub(crate) fn into_writer<'b>(self) -> Box<dyn Write + Send + 'b>
    where
        'a: 'b,
    {
        self.writer
    }

    /// Writes to `file`, splicing into it when it is a blocking pipe. Such a pipe is asked
    /// to hold a whole [`CHUNK`] (the kernel's default is 64 KiB in 16 slots, and each
    /// spliced piece of a socket's bytes takes a slot), so one `splice` moves a chunk. A
    /// file left non-blocking is written as [`WaitingFile`] writes it, and a pipe or socket
    /// is watched as [`Output::watching`] says.
    pub fn file(file: File) -> Output<'static> {
        let fd = file.as_raw_fd();
        let pipe = net::is_blocking_pipe(fd).then_some(fd);
        if let Some(pipe) = pipe {
            let _ = net::grow_pipe(pipe, CHUNK);
        }
        let watch = watch(&file);
        Output {
            writer: Box::new(WaitingFile::new(file)),
            pipe,
            watch,
        }
    }

    /// Also ends the bridge when `file` — where the writer's bytes go in the end, past a
    /// traffic log's tap, say — is a pipe or socket whose reader has gone, even while the
    /// peer sends nothing (the bridge then returns
    /// [`BridgeEnd::OutputClosed`](super::BridgeEnd::OutputClosed), as for a write that
    /// failed with a broken pipe). A regular file or a terminal is not watched: neither
    /// tells when its reader leaves.
    #[must_use]
    pub fn watching(mut self, file: &impl AsFd) -> Output<'a> {
        self.watch = watch(file);
        self
    }
}

/// A descriptor of its own for `file` when it is a pipe or socket (the writer may close
/// the original first).
fn watch(file: &impl AsFd) -> Option<OwnedFd> {
    let fd = file.as_fd();
    if !net::is_pipe_or_socket(fd.as_raw_fd()) {
        return None;
    }
    fd.try_clone_to_owned()
        .inspect_err(|err| tracing::debug!("cannot watch the output ({err}); not watched"))
        .ok()
}
