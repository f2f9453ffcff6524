//! Serving sockets this process inherited instead of binding its own (SPEC §3.4): those a
//! service manager passed (`fd:N`, `fd:NAME`, systemd's `LISTEN_FDS`), and those an older
//! socketkit handed over when it was told to restart ([`super::Handover`]).
//!
//! [`Inherited::from_env`] takes them once, at start-up, and removes the variables that
//! named them; [`Builder::listen_inherited`](super::Builder::listen_inherited) serves one.
//! Each is checked first: a listening stream socket or a bound datagram socket, never
//! anything else, and its real address is what the server reports.

use std::fmt;
use std::io::{self, Write};
use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::endpoint::Endpoint;
use crate::error::{Error, Op, Result};
use crate::net::{self, Bound, ListenerKind};

/// The first descriptor socket activation passes (`SD_LISTEN_FDS_START`).
const FIRST_ACTIVATED: RawFd = 3;

/// The sockets passed down to this process, not yet taken.
#[derive(Debug, Default)]
pub struct Inherited {
    /// Socket activation's, by position (fd 3, 4, …), with their names; `None` once taken.
    activated: Vec<(Option<OwnedFd>, String)>,
    /// An older socketkit's listeners, in its order, with what each is; `None` once taken.
    handed_over: Option<Vec<(Vec<OwnedFd>, ListenerKind)>>,
    /// Set until this process reports that it serves: the handed-over socket files are
    /// the older process's to keep until then, even if this one fails and exits.
    keep_files: Arc<AtomicBool>,
    /// An older socketkit's metrics endpoint's socket; `None` once taken, or if it handed
    /// none over.
    metrics: Option<OwnedFd>,
    /// The pid file an older socketkit handed over, open for writing.
    pid_file: Option<OwnedFd>,
    ready: Option<OwnedFd>,
    /// Whether an older socketkit handed its listeners over, taken or not.
    restart: bool,
}

impl Inherited {
    /// Takes the sockets a parent passed to this process — socket activation's
    /// `LISTEN_FDS` (only when `LISTEN_PID` is this process), or an older socketkit's
    /// handover — makes them close-on-exec, and removes the variables that named them, so
    /// that no program this process runs inherits either. A `LISTEN_PID` of another
    /// process means nothing was passed; that is not an error.
    ///
    /// # Safety
    ///
    /// Removes environment variables, so no other thread may run: call it first thing,
    /// before starting a runtime (see [`std::env::remove_var`]).
    ///
    /// # Errors
    ///
    /// Variables set for this process but malformed (`LISTEN_FDNAMES` not matching
    /// `LISTEN_FDS`, a handover naming a descriptor that is not open).
    pub unsafe fn from_env() -> Result<Inherited> {
        // SAFETY: the caller guarantees no other thread runs.
        let passed = unsafe { net::take_passed() }?;
        let (handed_over, metrics, pid_file, ready) = match passed.handover {
            Some(handover) => (
                Some(handover.groups),
                handover.metrics,
                handover.pid_file,
                Some(handover.ready),
            ),
            None => (None, None, None, None),
        };
        Ok(Inherited {
            restart: handed_over.is_some(),
            activated: passed
                .activated
                .into_iter()
                .map(|(fd, name)| (Some(fd), name))
                .collect(),
            handed_over,
            keep_files: Arc::new(AtomicBool::new(true)),
            metrics,
            pid_file,
            ready,
        })
    }

    /// Whether an older socketkit handed its listeners to this process (a restart), before
    /// and after they are taken.
    pub fn is_handover(&self) -> bool {
        self.restart
    }

    /// Whether socket activation passed sockets that are not taken yet.
    pub fn has_activated(&self) -> bool {
        self.activated.iter().any(|(fd, _)| fd.is_some())
    }

    /// The activated socket `fd:N`.
    ///
    /// # Errors
    ///
    /// `cannot listen on fd:N: REASON` — no socket activation, a number outside
    /// `LISTEN_FDS`, one already taken, or a descriptor that is not a listening socket.
    pub fn take_number(&mut self, fd: RawFd) -> Result<InheritedSocket> {
        let name = format!("fd:{fd}");
        let count = self.activated.len();
        let slot = usize::try_from(fd - FIRST_ACTIVATED)
            .ok()
            .and_then(|index| self.activated.get_mut(index));
        let Some((slot, _)) = slot else {
            let reason = match count {
                0 => "no socket was passed to this process (LISTEN_FDS and LISTEN_PID name none for it)".into(),
                1 => "the service manager passed one socket, fd:3".into(),
                n => format!(
                    "the service manager passed fd:3 to fd:{}",
                    FIRST_ACTIVATED + RawFd::try_from(n).unwrap_or(RawFd::MAX - 3) - 1
                ),
            };
            return Err(invalid(&name, reason));
        };
        let Some(fd) = slot.take() else {
            return Err(invalid(&name, "it is given twice".into()));
        };
        InheritedSocket::adopt(vec![fd], &name, net::adopt)
    }

    /// The activated sockets named `fd:NAME` (`LISTEN_FDNAMES`; systemd's
    /// `FileDescriptorName=`), each a listener of its own.
    ///
    /// # Errors
    ///
    /// `cannot listen on fd:NAME: REASON` — no socket of that name, or one that is not a
    /// listening socket.
    pub fn take_name(&mut self, wanted: &str) -> Result<Vec<InheritedSocket>> {
        let label = format!("fd:{wanted}");
        let mut found = Vec::new();
        for (slot, name) in &mut self.activated {
            if name == wanted
                && let Some(fd) = slot.take()
            {
                found.push(InheritedSocket::adopt(vec![fd], &label, net::adopt)?);
            }
        }
        if found.is_empty() {
            let names: Vec<&str> = self
                .activated
                .iter()
                .map(|(_, name)| name.as_str())
                .collect();
            let reason = if names.is_empty() {
                "no socket was passed to this process (LISTEN_FDS and LISTEN_PID name none for it)"
                    .into()
            } else if names.contains(&wanted) {
                "it is given twice".into()
            } else {
                format!(
                    "no socket has that name (LISTEN_FDNAMES has {})",
                    names.join(", ")
                )
            };
            return Err(invalid(&label, reason));
        }
        Ok(found)
    }

    /// Every socket not taken yet: the listeners an older socketkit handed over, in its
    /// order, or else every activated socket.
    ///
    /// # Errors
    ///
    /// The first that is not a listening socket.
    pub fn take_all(&mut self) -> Result<Vec<InheritedSocket>> {
        if let Some(groups) = self.handed_over.take() {
            let keep = &self.keep_files;
            return groups
                .into_iter()
                .enumerate()
                .map(|(i, (group, kind))| {
                    let name = format!("handed-over listener {}", i + 1);
                    InheritedSocket::adopt(group, &name, |fd, name| {
                        net::adopt_handed_over(fd, name, kind, keep)
                    })
                })
                .collect();
        }
        let mut all = Vec::new();
        for (i, (slot, _)) in self.activated.iter_mut().enumerate() {
            if let Some(fd) = slot.take() {
                let number = FIRST_ACTIVATED + RawFd::try_from(i).unwrap_or(RawFd::MAX - 3);
                all.push(InheritedSocket::adopt(
                    vec![fd],
                    &format!("fd:{number}"),
                    net::adopt,
                )?);
            }
        }
        Ok(all)
    }

    /// The listening socket of the metrics endpoint that an older socketkit handed over
    /// with its listeners ([`Handover::add_metrics_socket`](super::Handover::add_metrics_socket)),
    /// once; serve it with
    /// [`HttpListener::adopt`](crate::metrics::HttpListener::adopt). `None` when this is
    /// no handover, or the older socketkit handed over no metrics socket.
    pub fn take_metrics(&mut self) -> Option<OwnedFd> {
        self.metrics.take()
    }

    /// The pid file an older socketkit handed over, open for writing
    /// ([`Handover::add_pid_file`](super::Handover::add_pid_file)); `None` when it handed
    /// none over.
    pub fn take_pid_file(&mut self) -> Option<OwnedFd> {
        self.pid_file.take()
    }

    /// The way to tell the older socketkit that handed over that this process serves now
    /// (`None` when this is no handover).
    pub fn take_ready(&mut self) -> Option<ReadyReport> {
        let keep_files = Arc::clone(&self.keep_files);
        self.ready
            .take()
            .map(|pipe| ReadyReport { pipe, keep_files })
    }
}

fn invalid(name: &str, reason: String) -> Error {
    Error::new(
        Op::Listen,
        name,
        io::Error::new(io::ErrorKind::InvalidInput, reason),
    )
}

/// An inherited socket, checked, for [`Builder::listen_inherited`](super::Builder::listen_inherited):
/// one listener, of one socket or (handed over) of a set of `SO_REUSEPORT` sockets.
///
/// It moves into the first server bound with it; a clone shares it, so a second bind
/// fails rather than serving one socket twice.
#[derive(Clone)]
pub struct InheritedSocket {
    sockets: Arc<Mutex<Option<Vec<Bound>>>>,
    endpoint: Endpoint,
    name: String,
}

impl InheritedSocket {
    fn adopt(
        fds: Vec<OwnedFd>,
        name: &str,
        adopt: impl Fn(OwnedFd, &str) -> Result<Bound>,
    ) -> Result<InheritedSocket> {
        let sockets = fds
            .into_iter()
            .map(|fd| adopt(fd, name))
            .collect::<Result<Vec<_>>>()?;
        InheritedSocket::of(sockets, name)
    }

    /// One listener of `sockets`, which serves the first one's endpoint.
    fn of(sockets: Vec<Bound>, name: &str) -> Result<InheritedSocket> {
        let endpoint = match sockets.first() {
            Some(first) => first.endpoint.clone(),
            None => return Err(invalid(name, "no descriptor was passed for it".into())),
        };
        Ok(InheritedSocket {
            sockets: Arc::new(Mutex::new(Some(sockets))),
            endpoint,
            name: name.to_owned(),
        })
    }

    /// The endpoint the socket really serves (`tcp:127.0.0.1:8080`, `unix:/run/app.sock`).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The same socket serving TLS (`tls:fd:3`): its endpoint becomes `tls:`, so a server
    /// bound with it needs [`Builder::tls`](super::Builder::tls).
    ///
    /// # Errors
    ///
    /// `cannot listen on NAME: REASON` — the socket is not TCP, or a server took it already.
    pub fn speaking_tls(self) -> Result<InheritedSocket> {
        let sockets = self
            .take()?
            .into_iter()
            .map(|bound| net::speaking_tls(bound, &self.name))
            .collect::<Result<Vec<_>>>()?;
        InheritedSocket::of(sockets, &self.name)
    }

    /// How it was passed (`fd:3`, `fd:web`), as errors name it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The socket's descriptor, once, for a program that accepts on it without a server
    /// (`socketkit listen fd:3`), as it was passed (blocking or not).
    ///
    /// # Errors
    ///
    /// `cannot listen on NAME: REASON` — a server took it already, or it is what only a
    /// server serves: a handed-over set of `SO_REUSEPORT` sockets, or one with a socket
    /// file this process must remove when done.
    pub fn into_fd(self) -> Result<OwnedFd> {
        {
            // Looked at before it is taken: a refused socket stays whole (its file is not
            // removed by the drop of a half-taken set).
            let sockets = self.sockets.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(sockets) = sockets.as_ref()
                && (sockets.len() != 1 || sockets.iter().any(|bound| bound.file.is_some()))
            {
                let reason = "a handed-over listener, which only a server serves";
                return Err(invalid(&self.name, reason.into()));
            }
        }
        match self.take()?.pop() {
            Some(bound) => Ok(OwnedFd::from(bound.socket)),
            // `of` made it of one socket at least, and the check above of exactly one.
            None => Err(invalid(
                &self.name,
                "no descriptor was passed for it".into(),
            )),
        }
    }

    /// The sockets, once: the server that binds them owns them from then on.
    pub(crate) fn take(&self) -> Result<Vec<Bound>> {
        let mut sockets = self.sockets.lock().unwrap_or_else(PoisonError::into_inner);
        sockets.take().ok_or_else(|| {
            let reason = "another server already serves this inherited socket";
            invalid(&self.name, reason.into())
        })
    }
}

impl fmt::Debug for InheritedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InheritedSocket")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Tells the socketkit that handed its listeners over that this process now serves them:
/// it then stops accepting, drains and exits.
#[derive(Debug)]
pub struct ReadyReport {
    pipe: OwnedFd,
    keep_files: Arc<AtomicBool>,
}

impl ReadyReport {
    /// Reports readiness (this process's pid, on the pipe the older process waits on). The
    /// handed-over socket files are this process's from then on, to remove when it is
    /// done (unless it hands them over in turn).
    ///
    /// # Errors
    ///
    /// The older process is gone (the pipe is closed).
    pub fn report(self) -> io::Result<()> {
        let mut pipe = std::fs::File::from(self.pipe);
        pipe.write_all(format!("{}\n", std::process::id()).as_bytes())?;
        self.keep_files.store(false, Ordering::Release);
        Ok(())
    }
}
