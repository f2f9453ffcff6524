//! The Unix socket-file rules (SPEC §2.2): a socket file nobody listens on is stale and
//! replaced; a live socket or anything that is not a socket is an error and left untouched;
//! the file a listener made is removed when it goes, if it is still the one it made.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::ListenOptions;
use crate::endpoint::Endpoint;
use crate::error::{Error, Op, Result};
use crate::socket::{Family, Socket, Type};

/// The socket file a Unix listener created; removed when the listener goes, if the file at
/// the path is still the one we made (another server may have replaced it since) and the
/// socket was not handed to another process, which serves it on ([`UnixFile::keeper`]).
#[derive(Debug)]
pub(crate) struct UnixFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
    handed_over: Arc<AtomicBool>,
}

impl UnixFile {
    /// The guard of the socket file this process just bound at `path`.
    pub(crate) fn at(path: &Path) -> UnixFile {
        UnixFile {
            path: path.to_path_buf(),
            identity: identity(path),
            handed_over: Arc::default(),
        }
    }

    /// The guard of the socket file now at `path`, handed over by the socketkit this
    /// process replaces, kept while `keep` is set (see [`UnixFile::keeper`]).
    pub(crate) fn handed_over(path: &Path, keep: Arc<AtomicBool>) -> UnixFile {
        UnixFile {
            path: path.to_path_buf(),
            identity: identity(path),
            handed_over: keep,
        }
    }

    /// Where the socket file is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A flag that, once set, keeps the file when the listener goes: its socket has been
    /// handed to a new process, which still listens on it.
    pub(crate) fn keeper(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.handed_over)
    }

    /// A handle that removes the file from elsewhere, under this guard's rules: for a
    /// thread that catches the signal ending the process, when no destructor will run.
    /// `None` for an abstract name, which has no file.
    pub(crate) fn remover(&self) -> Option<UnixFileRemover> {
        self.identity.map(|identity| UnixFileRemover {
            path: self.path.clone(),
            identity,
            handed_over: Arc::clone(&self.handed_over),
        })
    }

    fn remove(&self) {
        if let Some(identity) = self.identity {
            remove_if_ours(&self.path, identity, &self.handed_over);
        }
    }
}

/// See [`UnixFile::remover`].
#[derive(Debug, Clone)]
pub(crate) struct UnixFileRemover {
    path: PathBuf,
    identity: (u64, u64),
    handed_over: Arc<AtomicBool>,
}

impl UnixFileRemover {
    /// A remover for the socket file a socket of this process has just bound at `path`
    /// (none for an abstract name, or when the file is already gone).
    pub(crate) fn for_bound(path: &Path) -> Option<UnixFileRemover> {
        identity(path).map(|identity| UnixFileRemover {
            path: path.to_path_buf(),
            identity,
            handed_over: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Where the socket file is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file if it is still the one the listener made and was not handed over;
    /// harmless when the listener's guard has already removed it.
    pub(crate) fn remove(&self) {
        remove_if_ours(&self.path, self.identity, &self.handed_over);
    }
}

/// Removes the socket file at `path` unless its socket was handed over or the file is no
/// longer the one known by `identity` (another server may have replaced it since).
fn remove_if_ours(path: &Path, identity: (u64, u64), handed_over: &AtomicBool) {
    if handed_over.load(Ordering::Acquire) {
        return;
    }
    if self::identity(path) == Some(identity) {
        let _ = fs::remove_file(path);
    }
}

/// The file at `path`, to know it again; none for an abstract name (`@NAME`), which has no
/// file, so that its guard never removes one.
fn identity(path: &Path) -> Option<(u64, u64)> {
    if crate::socket::abstract_name(path).is_some() {
        return None;
    }
    fs::symlink_metadata(path)
        .ok()
        .map(|meta| (meta.dev(), meta.ino()))
}

impl Drop for UnixFile {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A bound Unix socket at `path` (listening, for a stream) and the guard that removes its
/// file.
pub(super) fn bind_unix(
    path: &Path,
    ty: Type,
    options: ListenOptions,
    endpoint: &Endpoint,
) -> Result<(Socket, UnixFile)> {
    let fail = |err: io::Error| Error::new(Op::Listen, endpoint, err);
    if crate::socket::abstract_name(path).is_some() {
        return bind_abstract(path, ty, options, endpoint);
    }
    clear_stale_socket(path, ty).map_err(fail)?;
    let socket = Socket::new(Family::Unix, ty)?;
    let bound = match options.unix_mode {
        // Made with its permission bits (see `sys::with_umask`): no moment with the
        // umask's, when another user could connect, and no chmod through a symlink.
        Some(mode) => crate::sys::with_umask(!mode & 0o777, || socket.bind(path)),
        None => socket.bind(path),
    };
    bound.map_err(|err| fail(err.into_io_error()))?;
    // From here on the file is ours: the guard removes it if a later step fails.
    let file = UnixFile::at(path);
    if let Some(mode) = options.unix_mode.filter(|mode| mode & !0o777 != 0) {
        // The bits a mask cannot give (setuid, setgid, sticky), on the file itself.
        crate::sys::chmod_no_follow(path, mode).map_err(fail)?;
    }
    if ty == Type::Stream {
        socket
            .listen(options.backlog)
            .map_err(|err| fail(err.into_io_error()))?;
    }
    Ok((socket, file))
}

/// A Unix socket in the abstract namespace (`@NAME`): no file to clear, chmod or remove.
/// Its guard has no file identity, so it never removes anything (not even a file that
/// happens to be called `@NAME`); the name goes when the socket closes.
fn bind_abstract(
    path: &Path,
    ty: Type,
    options: ListenOptions,
    endpoint: &Endpoint,
) -> Result<(Socket, UnixFile)> {
    let fail = |err: Error| Error::new(Op::Listen, endpoint, err.into_io_error());
    let socket = Socket::new(Family::Unix, ty)?;
    socket.bind(path).map_err(fail)?;
    if ty == Type::Stream {
        socket.listen(options.backlog).map_err(fail)?;
    }
    Ok((socket, UnixFile::at(path)))
}

/// A socket file nobody listens on is left over from a server that died: replace it. A live
/// socket or anything that is not a socket is refused and left untouched.
pub(super) fn clear_stale_socket(path: &Path, ty: Type) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket; not replacing it",
        ));
    }
    // Connecting is the only way to ask whether anybody is bound there; a socket of the
    // other type answers EPROTOTYPE, and may be live, so it is left alone.
    // Without waiting: a live server whose backlog is full would hold a blocking connect
    // (and the start, deaf to signals) until it took one; `EAGAIN` is a live server too.
    let probe = Socket::new(Family::Unix, ty).map_err(Error::into_io_error)?;
    probe.set_blocking(false).map_err(Error::into_io_error)?;
    let in_use = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("another server is listening on this socket{why}"),
        ))
    };
    match probe.connect(path).map_err(Error::into_io_error) {
        Ok(()) => in_use(""),
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => fs::remove_file(path),
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => in_use(" (its backlog is full)"),
        Err(err) => Err(err),
    }
}
