//! One io_uring worker: a thread with its own ring that accepts on one listener (a multishot
//! accept: one request, a completion per client) and runs a [`RingRoutine`] on each connection
//! with the kernel doing the waiting.
//!
//! - An immediate reply is a send (`MSG_MORE`); its completion makes a `shutdown(SHUT_WR)`,
//!   frees the slot and queues the close (its completion skipped), so that the reply and
//!   the FIN leave in one segment and the close costs no trip of its own through the loop.
//!   The shutdown is the greeting's one system call of its own: as a ring request it would
//!   run on io_uring's thread pool (the kernel cannot shut a socket down without the chance
//!   of blocking), which cost a thread wake-up per connection and ~1.2× the CPU. The
//!   loop's one `io_uring_enter` per turn submits every connection's requests and reaps
//!   every completion.
//! - Echo and discard receive into the shared [`BufferRing`] with no buffer of their own:
//!   the kernel picks one when bytes arrive. A TCP connection has one multishot receive for
//!   its life; echo sends each buffer back (all of it: `MSG_WAITALL`) in order while it
//!   receives, and stops receiving while it holds its share of buffers, so a client that
//!   does not read its echoes holds the server back through TCP flow control, as on the
//!   epoll path (`worker/stream.rs`).
//!
//! A slot is freed only after the last completion of every request of its connection (a
//! stream's close is queued once its receive and send have both ended; a reply's close,
//! which needs nothing of the slot, is queued after the slot is freed). The worker holds a
//! [`Watcher`] while it runs and each long-lived connection one of its own: draining waits
//! for them exactly as for the epoll path's tasks.

mod admission;
mod connection;
mod spill;
mod stream;

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use io_uring::types::{Fd, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};
use slab::Slab;

use self::connection::Conn;
use super::buffers::BufferRing;
use super::{RingListener, RingRoutine, Wake};
use crate::metrics::LoopCounts;
use crate::server::EXHAUSTION_BACKOFF;
use crate::server::exhaustion::Backoff;
use crate::server::meter::ListenerMeter;
use crate::server::pipeline::Pipeline;
use crate::server::shutdown::{ShutdownHandle, Watcher};
use crate::server::steering::{LoadWatch, Steering};

/// What a completion is for: the low bits of its user data; the rest is the slot.
const ACCEPT: u64 = 0;
const WAKE: u64 = 1;
const RETRY_ACCEPT: u64 = 2;
const CANCEL: u64 = 3;
const RECV: u64 = 4;
const SEND: u64 = 5;
const CLOSE: u64 = 6;
const HEADER: u64 = 7;
const HEADER_TIMEOUT: u64 = 8;
/// A close whose connection is already freed (its completion is skipped unless it fails).
const UNTRACKED_CLOSE: u64 = 9;
/// The send of an echo connection's spilled bytes (`spill.rs`): a kind of its own, so that
/// the cancel of a send from its queue can never take it.
const SPILL_SEND: u64 = 10;
const KIND_BITS: u32 = 4;

/// The user data of a connection's request.
pub(super) fn token(slot: usize, kind: u64) -> u64 {
    ((slot as u64) << KIND_BITS) | kind
}

/// The buffer group of the worker's [`BufferRing`].
const GROUP: u16 = 0;

/// The send flags: no `SIGPIPE` for a client that went away, and all of the bytes before the
/// request completes (the kernel retries a short send itself).
const SEND_FLAGS: i32 = libc::MSG_NOSIGNAL | libc::MSG_WAITALL;

/// An immediate reply's: as [`SEND_FLAGS`], and `MSG_MORE`, which holds the bytes back for
/// the shutdown made once the send completes: its FIN then leaves in the same segment as
/// the reply, one packet less per connection for both ends.
const REPLY_FLAGS: i32 = SEND_FLAGS | libc::MSG_MORE;

/// What the workers of one listener share.
pub(super) struct Shared {
    pub(super) meter: Arc<ListenerMeter>,
    /// Shared by every accept loop of the server: out of descriptors, already logged.
    pub(super) exhausted: Arc<AtomicBool>,
    /// The listener, as the log names it.
    pub(super) endpoint: String,
    /// The server's admission stages, when they can all decide on the worker (see
    /// `admission.rs`).
    pub(super) admission: Option<Arc<Pipeline>>,
    /// Where the listeners' connections land, for an immediate reply on several listeners.
    pub(super) steering: Option<Arc<Steering>>,
    /// The server's, told when this worker cannot go on ([`ShutdownHandle::fail`]).
    pub(super) server: ShutdownHandle,
}

/// The worker's state; runs on its own thread until its listener is closed and its last
/// connection is gone.
pub(super) struct Worker {
    // Declared first: dropped (closed) before the buffers it may still point at.
    ring: IoUring,
    buffers: Option<BufferRing>,
    listener: Option<Arc<RingListener>>,
    routine: RingRoutine,
    admission: Option<Arc<Pipeline>>,
    conns: Slab<Conn>,
    /// Connections whose receive found no free buffer: receive again when one comes back.
    starved: Vec<usize>,
    wake: UnixStream,
    wake_buf: Box<[u8; 16]>,
    retry_after: Box<Timespec>,
    meter: Arc<ListenerMeter>,
    counts: Option<LoopCounts>,
    /// Out of a resource: accepting again after a pause (logged once per burst).
    backoff: Backoff,
    endpoint: String,
    /// Held while the worker accepts or has replies in flight (they have no watcher of
    /// their own); dropped after, so that the drain counts only open connections.
    watcher: Option<Watcher>,
    replies_in_flight: usize,
    accepting: bool,
    /// The multishot accept is in flight (it ends with a completion without `MORE`).
    accept_armed: bool,
    forced: bool,
    /// Told once the listener is closed: the server's shutdown waits for it.
    stopped: Option<tokio::sync::oneshot::Sender<()>>,
    /// The last immediate reply, shared by every connection that gets the same bytes.
    last_reply: Option<Arc<[u8]>>,
    /// Provided buffers taken by receives and not given back yet.
    buffers_out: usize,
    /// A receive found no free buffer this turn: the connections' queues are spilled.
    starving: bool,
    /// The spilled bytes of echo connections, by slot (`worker/spill.rs`).
    spills: HashMap<usize, spill::Spill>,
    /// Receives are multishot: on TCP, until the kernel refuses one (before Linux 6.0).
    multishot: bool,
    /// Streams' registered descriptors.
    files: stream::FileTable,
    /// This worker's load, for the steering of an immediate reply's listeners.
    load: Option<LoadWatch>,
    /// The server's shutdown, told if this worker fails for good.
    server: ShutdownHandle,
}

// An idle connection's whole cost in this process is its slot.
const _: () = assert!(std::mem::size_of::<Conn>() <= 72);

/// The ring's size: room for a loop turn's requests under load.
const RING_ENTRIES: u32 = 1024;
/// Provided buffers per worker: enough for every connection moving bytes at once in the
/// benchmarks' shapes (16–64 echo clients), few enough to stay small.
const BUFFER_COUNT: u16 = 64;
pub(super) const BUFFER_SIZE: usize = 16 * 1024;

/// Makes the ring, on the thread that will use it (a single-issuer ring must be).
pub(super) fn ring() -> io::Result<IoUring> {
    let mut builder = IoUring::builder();
    builder
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(RING_ENTRIES * 4);
    match builder.build(RING_ENTRIES) {
        Ok(ring) => Ok(ring),
        // Kernels before 6.1 lack deferred task running: plain cooperative task running.
        Err(_) => IoUring::builder()
            .setup_coop_taskrun()
            .setup_cqsize(RING_ENTRIES * 4)
            .build(RING_ENTRIES),
    }
}

impl Worker {
    pub(super) fn new(
        ring: IoUring,
        listener: Arc<RingListener>,
        routine: RingRoutine,
        wake: UnixStream,
        shared: Shared,
        watcher: Watcher,
        stopped: tokio::sync::oneshot::Sender<()>,
    ) -> io::Result<Worker> {
        // Made here, on the worker's thread, whose CPU time it reads.
        let load = shared.steering.as_ref().map(Steering::watch_thread);
        let buffers = match routine {
            RingRoutine::Reply(_) => None,
            RingRoutine::Echo | RingRoutine::Discard => {
                Some(BufferRing::new(&ring, GROUP, BUFFER_COUNT, BUFFER_SIZE)?)
            }
        };
        let multishot = stream::multishot_suits(&listener.fd);
        Ok(Worker {
            ring,
            buffers,
            listener: Some(listener),
            routine,
            admission: shared.admission,
            conns: Slab::new(),
            starved: Vec::new(),
            wake,
            wake_buf: Box::new([0; 16]),
            retry_after: Box::new(Timespec::from(EXHAUSTION_BACKOFF)),
            counts: shared.meter.loop_counts(),
            meter: shared.meter,
            backoff: Backoff::new(&shared.exhausted),
            endpoint: shared.endpoint,
            server: shared.server,
            watcher: Some(watcher),
            replies_in_flight: 0,
            accepting: true,
            accept_armed: false,
            forced: false,
            stopped: Some(stopped),
            last_reply: None,
            buffers_out: 0,
            starving: false,
            spills: HashMap::new(),
            multishot,
            files: stream::FileTable::Unset,
            load,
        })
    }

    /// Runs until the listener is closed and every connection has ended.
    pub(super) fn run(mut self) {
        self.arm_accept();
        self.arm_wake();
        let mut completions = Vec::with_capacity(RING_ENTRIES as usize);
        while self.accepting || self.accept_armed || !self.conns.is_empty() {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                // EBUSY: the completion queue is full; reaping below makes room.
                Err(err) if err.raw_os_error() == Some(libc::EBUSY) => {}
                Err(err) => {
                    let err = crate::Error::new(
                        crate::error::Op::Serve,
                        &self.endpoint,
                        io::Error::new(
                            err.kind(),
                            format!(
                                "an io_uring worker stopped: {}",
                                crate::error::describe(&err)
                            ),
                        ),
                    );
                    self.server.fail(err);
                    break;
                }
            }
            completions.clear();
            completions.extend(
                self.ring
                    .completion()
                    .map(|cqe| (cqe.user_data(), cqe.result(), cqe.flags())),
            );
            for &(user_data, result, flags) in &completions {
                self.complete(user_data, result, flags);
            }
            if std::mem::take(&mut self.starving) && !self.forced {
                self.unpin_streams();
            }
            self.feed_starved();
            if let (Some(load), Some(listener), true) =
                (&mut self.load, &self.listener, self.accepting)
            {
                load.turn(listener.fd.as_fd());
            }
        }
        self.close_everything();
    }

    /// Queues `entry`, submitting what is queued first if the queue is full.
    fn push(&mut self, entry: &squeue::Entry) {
        loop {
            // SAFETY: every buffer an entry points at lives in the worker (the reply bytes in
            // the connection's slot, provided buffers in `buffers`, the wake buffer and the
            // timespec boxed) until the request's last completion.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return;
            }
            if let Err(err) = self.ring.submit() {
                tracing::debug!("io_uring submit: {err}");
            }
        }
    }

    fn arm_accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        let entry = opcode::AcceptMulti::new(Fd(listener.fd.as_raw_fd()))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(ACCEPT);
        self.push(&entry);
        self.accept_armed = true;
    }

    fn arm_wake(&mut self) {
        let entry = opcode::Recv::new(
            Fd(self.wake.as_raw_fd()),
            self.wake_buf.as_mut_ptr(),
            self.wake_buf.len() as u32,
        )
        .build()
        .user_data(WAKE);
        self.push(&entry);
    }

    fn complete(&mut self, user_data: u64, result: i32, flags: u32) {
        let slot = (user_data >> KIND_BITS) as usize;
        match user_data & ((1 << KIND_BITS) - 1) {
            ACCEPT => self.accepted(result, flags),
            WAKE => self.woken(result),
            RETRY_ACCEPT if self.accepting => self.arm_accept(),
            RECV => self.received(slot, result, flags),
            SEND => self.sent(slot, result),
            SPILL_SEND => self.spill_sent(slot, result),
            CLOSE => self.closed(slot, result),
            HEADER => self.header_received(slot, result),
            // A cancel's own completion, a header timeout's, a retry after the listener
            // closed, or a failed close of a connection already freed.
            _ => {}
        }
    }

    fn accepted(&mut self, result: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.accept_armed = false;
        }
        if result >= 0 {
            self.meter.accepted_by(self.counts.as_mut());
            self.backoff.succeeded(|| &self.endpoint);
            // SAFETY: a successful accept's result is a new descriptor that only we own.
            let fd = unsafe { OwnedFd::from_raw_fd(result) };
            if let Some(listener) = &self.listener {
                listener.accepted(fd.as_fd());
            }
            if self.forced {
                // Taken off the queue after the deadline (the accept's cancel had not come
                // yet): nothing is served any more; reset like the rest.
                crate::net::reset_now(fd.as_fd());
            } else {
                self.serve(fd);
            }
        } else {
            let err = io::Error::from_raw_os_error(-result);
            self.accept_failed(&err);
        }
        if self.accept_armed {
            return;
        }
        if !self.accepting {
            // The cancel took it: the listener is ours to close now.
            self.close_listener();
        } else if !self.backoff.is_backing_off() {
            self.arm_accept();
        }
    }

    fn accept_failed(&mut self, err: &io::Error) {
        // Nothing to take, or the cancel of a draining worker: not errors.
        if err.kind() == io::ErrorKind::WouldBlock || err.raw_os_error() == Some(libc::ECANCELED) {
            return;
        }
        self.meter.accept_error(err);
        // A connection that died in the queue is skipped; what remains is exhaustion.
        if crate::net::is_connection_error(err) {
            return;
        }
        self.backoff.failed(|| &self.endpoint, err);
        if !self.accept_armed && self.accepting {
            let entry = opcode::Timeout::new(&*self.retry_after as *const Timespec)
                .build()
                .user_data(RETRY_ACCEPT);
            self.push(&entry);
        }
    }

    fn woken(&mut self, result: i32) {
        let Ok(len @ 1..) = usize::try_from(result) else {
            // The server's end of the wake-up socket is gone: it wants everything closed.
            return self.force();
        };
        let bytes = *self.wake_buf;
        for &byte in &bytes[..len.min(bytes.len())] {
            match Wake::from_byte(byte) {
                Some(Wake::Drain) => self.stop_accepting(),
                Some(Wake::Force) => self.force(),
                None => {}
            }
        }
        self.arm_wake();
    }

    /// Drops the worker's own watcher once nothing but open connections needs it.
    fn release_watcher(&mut self) {
        if !self.accepting && self.replies_in_flight == 0 {
            self.watcher = None;
        }
    }

    fn stop_accepting(&mut self) {
        if !self.accepting {
            return;
        }
        self.accepting = false;
        self.release_watcher();
        if self.accept_armed {
            let entry = opcode::AsyncCancel::new(ACCEPT).build().user_data(CANCEL);
            self.push(&entry);
        } else {
            self.close_listener();
        }
    }

    /// Closes the listener, its accept over, and tells the server (which waits for every
    /// worker's before it goes on shutting down).
    fn close_listener(&mut self) {
        self.listener = None;
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.send(());
        }
    }

    /// Closes every connection now (the drain deadline passed), each with a reset: it was
    /// cut short, and its client must not take the close for a complete exchange. The
    /// reset (`net::reset_now`) fails the receives and sends in flight, whose completions
    /// then close the connections as any failure does: nothing changes in how a slot is
    /// freed, so no completion comes for a freed one.
    fn force(&mut self) {
        self.stop_accepting();
        if self.forced {
            return;
        }
        self.forced = true;
        for (_, conn) in &mut self.conns {
            // Its close is queued, nothing else of it is in flight, and the close may
            // have run already (its descriptor gone, perhaps reused): it ends as it is.
            if matches!(conn.job, connection::Job::Closing) {
                continue;
            }
            // Its `closed` line says why, before the reset's failures say "reset by peer".
            if let Some(meter) = &mut conn.meter {
                meter.cut_short();
            }
            // SAFETY: no close of this descriptor is queued (above), so it is open: a
            // connection's only close is queued once nothing else of it is in flight.
            crate::net::reset_now(unsafe { BorrowedFd::borrow_raw(conn.fd) });
        }
        // After the resets: a starved stream has nothing in flight and closes at once.
        for slot in std::mem::take(&mut self.starved) {
            self.close(slot);
        }
    }

    /// Receives again for starved connections while buffers are free: a receive may have
    /// found the ring empty just before this turn gave buffers back, and no later give-back
    /// would come for it if nothing else moves.
    fn feed_starved(&mut self) {
        let free = usize::from(BUFFER_COUNT).saturating_sub(self.buffers_out);
        for _ in 0..free.min(self.starved.len()) {
            if let Some(slot) = self.starved.pop() {
                self.receive(slot);
            }
        }
    }

    /// After the loop: the closes still queued (a reply's connection is freed before its
    /// close is submitted) go in, and what is left if the ring failed is closed.
    fn close_everything(&mut self) {
        if let Err(err) = self.ring.submit() {
            tracing::debug!("io_uring submit: {err}");
        }
        for conn in self.conns.drain() {
            // SAFETY: the slab held the only copy of each open descriptor.
            drop(unsafe { OwnedFd::from_raw_fd(conn.fd) });
        }
        self.close_listener();
    }
}

/// Writes a wake-up byte to a worker.
pub(super) fn wake(socket: &mut UnixStream, wake: Wake) {
    let _ = socket.write_all(&[wake as u8]);
}
