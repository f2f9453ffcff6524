//! A ring worker's connections: what each is doing, and the routine's steps — the reply,
//! the start of an echo or discard stream (`stream.rs`), the close — each posted as one
//! request and finished by its completion. Admission (a PROXY header, access rules) comes
//! before, in `admission.rs`.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use io_uring::types::{Fd, Timespec};
use io_uring::{opcode, squeue};

use super::stream::Stream;
use super::{CLOSE, REPLY_FLAGS, SEND, SEND_FLAGS, UNTRACKED_CLOSE, Worker, token};
use crate::proxy_protocol::Gather;
use crate::server::admission::Held;
use crate::server::meter::Meter;
use crate::server::ring::RingRoutine;
use crate::server::shutdown::{InFlight, Watcher};
use crate::socket::Address;

/// One accepted connection.
pub(super) struct Conn {
    pub(super) fd: RawFd,
    pub(super) job: Job,
    /// Counted for the metrics and the `-v` log, when either is on (boxed: an idle
    /// connection costs its slot, and most servers count nothing per connection).
    pub(super) meter: Option<Box<Meter>>,
    /// Held by long-lived connections, so that draining waits for them.
    _in_flight: Option<InFlight>,
    /// What the admission stages keep for the connection's life (a per-source count).
    _held: Option<Box<Held>>,
}

impl Conn {
    /// Its stream, if it is an echo or discard connection past its start.
    pub(super) fn stream_mut(&mut self) -> Option<&mut Stream> {
        match &mut self.job {
            Job::Stream(stream) => Some(stream),
            _ => None,
        }
    }

    /// Its stream and its meter at once, to note a stream's failure.
    pub(super) fn stream_and_meter(&mut self) -> Option<(&mut Stream, &mut Option<Box<Meter>>)> {
        match &mut self.job {
            Job::Stream(stream) => Some((stream, &mut self.meter)),
            _ => None,
        }
    }

    /// Makes it an echo or discard connection.
    pub(super) fn set_stream(&mut self, stream: Stream) {
        self.job = Job::Stream(stream);
    }

    /// Whether it is an echo or discard connection past its start.
    pub(super) fn is_stream(&self) -> bool {
        matches!(self.job, Job::Stream(_))
    }
}

/// What a connection is doing.
pub(super) enum Job {
    /// Its PROXY header is being received (`admission.rs`).
    Header(Box<HeaderRead>),
    /// Its reply's send is queued: the bytes stay here until it completes.
    Reply {
        bytes: Arc<[u8]>,
        /// When metered: the time, and for the `-v` log the addresses.
        metered: Option<Box<Answered>>,
    },
    /// The bytes that came in with the PROXY header are being sent back.
    EchoingFirst(Box<[u8]>),
    /// Echo or discard: receiving, and sending back (`stream.rs`).
    Stream(Stream),
    /// Its close is queued.
    Closing,
}

/// What a metered immediate reply records once its send completes.
pub(super) struct Answered {
    /// The client and the local address, when the `-v` log is on.
    peer: Option<Address>,
    local: Option<Address>,
    started: Instant,
    /// Bytes received: the PROXY header's, and any that came with it.
    received: usize,
}

/// A PROXY header on its way in (`admission.rs`).
pub(super) struct HeaderRead {
    pub(super) gather: Gather,
    /// The balancer that connected.
    pub(super) proxy: Address,
    pub(super) started: Option<Instant>,
    /// When the whole header must be in: set by the first receive that waits (the first
    /// receive of all does not).
    pub(super) deadline: Option<Instant>,
    /// The wait of the receive in flight, for its linked timeout.
    pub(super) wait: Timespec,
}

/// A connection the admission stages let in.
pub(super) struct Admitted {
    /// Its client, when admission asked (or a PROXY header named it); otherwise the
    /// socket is asked, only if the connection is metered.
    pub(super) peer: Option<Address>,
    /// When it was accepted, if metered.
    pub(super) started: Option<Instant>,
    pub(super) held: Held,
    /// The PROXY header's length, counted as received.
    pub(super) header_len: usize,
}

impl Worker {
    /// Takes a new connection: admits it, then starts the routine.
    pub(super) fn serve(&mut self, fd: OwnedFd) {
        let started = self.meter.clock();
        let replies = matches!(self.routine, RingRoutine::Reply(_));
        let slot = self.conns.insert(Conn {
            fd: std::os::fd::IntoRawFd::into_raw_fd(fd),
            job: Job::Closing,
            meter: None,
            _in_flight: if replies {
                None
            } else {
                self.watcher.clone().map(Watcher::in_flight)
            },
            _held: None,
        });
        if replies {
            // Counted until the close completes, whatever admission decides.
            self.replies_in_flight += 1;
        }
        if let Some(admitted) = self.admit(slot, started) {
            self.begin(slot, admitted, Box::default());
        }
    }

    /// Starts the routine on an admitted connection; `first` holds the bytes that came in
    /// with its PROXY header (the service's).
    pub(super) fn begin(&mut self, slot: usize, admitted: Admitted, first: Box<[u8]>) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let raw = conn.fd;
        let Admitted {
            peer,
            started,
            held,
            header_len,
        } = admitted;
        if !held.is_empty() {
            conn._held = Some(Box::new(held));
        }
        match &self.routine {
            RingRoutine::Reply(spawner) => {
                // The addresses are for the `-v` log line only: asked of the socket (two
                // system calls) only when it is on.
                let logged = tracing::enabled!(tracing::Level::DEBUG);
                let metered = started.map(|started| {
                    let (peer, local) = if logged {
                        (peer.or_else(|| peer_of(raw)), local_of(raw))
                    } else {
                        (None, None)
                    };
                    Box::new(Answered {
                        peer,
                        local,
                        started,
                        // The bytes that came with the header were received too.
                        received: header_len + first.len(),
                    })
                });
                let bytes = match spawner.immediate_reply() {
                    Some(reply) => match &self.last_reply {
                        Some(last) if **last == *reply => Arc::clone(last),
                        _ => {
                            let bytes: Arc<[u8]> = Arc::from(&*reply);
                            self.last_reply = Some(Arc::clone(&bytes));
                            bytes
                        }
                    },
                    None => Arc::from(&[][..]),
                };
                let (ptr, len) = (bytes.as_ptr(), bytes.len() as u32);
                conn.job = Job::Reply { bytes, metered };
                // The send's completion shuts the connection down and closes it
                // (`sent`): io_uring would run a shutdown on its thread pool, a thread
                // wake-up per connection.
                let send = opcode::Send::new(Fd(raw), ptr, len)
                    .flags(REPLY_FLAGS)
                    .build()
                    .user_data(token(slot, SEND));
                self.push(&send);
            }
            RingRoutine::Echo | RingRoutine::Discard => {
                conn.meter = started
                    .and_then(|_| peer.or_else(|| peer_of(raw)))
                    .map(|peer| {
                        let mut meter = Meter::start(peer, &self.meter, || local_of(raw));
                        meter.received(header_len + first.len());
                        Box::new(meter)
                    });
                if first.is_empty() || matches!(self.routine, RingRoutine::Discard) {
                    return self.start_stream(slot);
                }
                let entry = opcode::Send::new(Fd(raw), first.as_ptr(), first.len() as u32)
                    .flags(SEND_FLAGS)
                    .build()
                    .user_data(token(slot, SEND));
                conn.job = Job::EchoingFirst(first);
                self.push(&entry);
            }
        }
    }

    pub(super) fn sent(&mut self, slot: usize, result: i32) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        match &mut conn.job {
            Job::Reply { bytes, .. } => {
                let outcome = match usize::try_from(result) {
                    // The FIN, by a shutdown rather than left to the close: `MSG_MORE` held
                    // the reply back so that both leave in one segment, and a close with
                    // unread bytes from the client would reset the connection and throw
                    // the reply away.
                    Ok(sent) if sent == bytes.len() => shut_down(conn.fd),
                    Ok(_) => Err(io::ErrorKind::WriteZero.into()),
                    Err(_) => Err(io::Error::from_raw_os_error(-result)),
                };
                self.finish_reply(slot, outcome);
            }
            Job::EchoingFirst(first) => {
                let len = first.len();
                let complete = usize::try_from(result).is_ok_and(|sent| sent == len);
                if let (true, Some(meter)) = (complete, &mut conn.meter) {
                    meter.sent(len);
                }
                if complete && !self.forced {
                    self.start_stream(slot);
                } else {
                    self.close_now(slot);
                }
            }
            Job::Stream(_) => self.stream_sent(slot, result),
            Job::Header(_) | Job::Closing => {}
        }
    }

    /// Returns a buffer to the kernel, and a starved connection its chance at it.
    pub(super) fn give_back(&mut self, bid: u16) {
        if let Some(buffers) = &mut self.buffers {
            buffers.give_back(bid);
        }
        self.buffers_out -= 1;
        if let Some(slot) = self.starved.pop() {
            self.receive(slot);
        }
    }

    /// Closes a connection: at once, or for a stream once nothing of it is in flight.
    pub(super) fn close(&mut self, slot: usize) {
        if self.conns.get(slot).is_some_and(Conn::is_stream) {
            self.fail(slot)
        } else {
            self.close_now(slot)
        }
    }

    /// Queues a connection's close; nothing of it may be in flight.
    pub(super) fn close_now(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        conn.job = Job::Closing;
        let entry = opcode::Close::new(Fd(conn.fd))
            .build()
            .user_data(token(slot, CLOSE));
        self.push(&entry);
    }

    /// Frees a connection whose reply's send has completed, and queues its close, which
    /// needs nothing of the slot: the close's completion is skipped (one that fails has no
    /// slot to name), so the loop can go back to waiting in the same `io_uring_enter` that
    /// submits it.
    fn finish_reply(&mut self, slot: usize, outcome: io::Result<()>) {
        let Some(conn) = self.conns.try_remove(slot) else {
            return;
        };
        let entry = opcode::Close::new(Fd(conn.fd))
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(UNTRACKED_CLOSE);
        self.push(&entry);
        self.reply_done(conn, Some(outcome));
    }

    pub(super) fn closed(&mut self, slot: usize, _result: i32) {
        let Some(conn) = self.conns.try_remove(slot) else {
            return;
        };
        // Only a connection that never got its reply (refused, or its admission failed)
        // comes here: an answered one is freed when its send completes.
        if matches!(self.routine, RingRoutine::Reply(_)) {
            self.reply_done(conn, None);
        }
    }

    /// A reply's connection is gone: counted, and recorded if metered and its reply was
    /// sent (`outcome`: delivered, or how it failed; `None`: never sent, the connection
    /// refused or its admission failed, which is counted where it was refused).
    fn reply_done(&mut self, conn: Conn, outcome: Option<io::Result<()>>) {
        self.replies_in_flight -= 1;
        self.release_watcher();
        if let Some(outcome) = outcome
            && let Job::Reply {
                bytes,
                metered: Some(answered),
            } = conn.job
        {
            let Answered {
                peer,
                local,
                started,
                received,
            } = *answered;
            let counts = self.counts.as_mut();
            let peer = || peer.unwrap_or_else(|| Address::unix(""));
            let sent = if outcome.is_ok() { bytes.len() } else { 0 };
            let failed = outcome.as_ref().err();
            self.meter
                .answered(counts, peer, || local, (received, sent), started, failed);
        }
    }
}

/// Sends a connection's FIN (what `MSG_MORE` held back goes with it).
fn shut_down(fd: RawFd) -> io::Result<()> {
    // SAFETY: as in `peer_of`.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    socket2::SockRef::from(&fd).shutdown(std::net::Shutdown::Write)
}

/// The peer of the connection `fd`, even one that reset before it was asked (the
/// multishot accept gives no address; see `net::peer_name`).
pub(super) fn peer_of(fd: RawFd) -> Option<Address> {
    // SAFETY: `fd` is open for the duration of this call (the caller owns it).
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let peer = crate::net::peer_name(fd).ok()?;
    Some(Address::from_sockaddr(&peer).to_canonical())
}

pub(super) fn local_of(fd: RawFd) -> Option<Address> {
    // SAFETY: as in `peer_of`.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let local = socket2::SockRef::from(&fd).local_addr().ok()?;
    Some(Address::from_sockaddr(&local).to_canonical())
}
