//! Echo and discard on the ring: a connection's byte stream, received into the worker's
//! provided buffers and, for echo, sent back in order.
//!
//! One multishot receive serves a connection for as long as it moves bytes (one request for
//! the connection's life, not one per block): each completion names the buffer the kernel
//! filled. Echo queues the buffers (`buffers::Queue`) and sends the oldest back while the
//! receive goes on; a connection that holds [`HELD_MAX`] buffers — its client sends and does
//! not read — has its receive cancelled until its sends drain them, so that one client
//! cannot take the buffers every other connection shares. When the buffers run out all the
//! same (many such clients), what the connections hold is copied out (`spill.rs`).
//!
//! Unix sockets, and kernels without the multishot receive (before Linux 6.0), get one
//! receive per block instead. On a Unix socket the multishot receive can miss the client's
//! end of stream: seen on Linux 6.18, when the bytes and the shutdown came together, the
//! receive took the bytes and no completion came for the end (as we read it, the socket
//! said nothing was left to read, so io_uring waited for a wake-up already spent), and the
//! connection hung until the client gave up (1 in ~10 runs of
//! `managed_restart::sigusr2_under_load_keeps_every_echo_on_tcp_and_unix`). TCP counts a
//! pending FIN as a byte still to read (`tcp_inq_hint`), so its receive goes on to find it.
//!
//! A connection is closed only once nothing of it is in flight: its receive has ended (a
//! cancel asks it to) and its send has completed, so that no completion comes for a slot
//! after it is freed.

use std::os::fd::{OwnedFd, RawFd};

use io_uring::types::{Fd, Fixed};
use io_uring::{cqueue, opcode, squeue};

use super::spill;
use super::{BUFFER_SIZE, CANCEL, GROUP, RECV, SEND, SEND_FLAGS, SPILL_SEND, Worker, token};
use crate::server::meter::Meter;
use crate::server::ring::RingRoutine;
use crate::server::ring::buffers::Queue;

/// The buffers one connection may hold before its receive is cancelled: 64 KiB, a TCP
/// window's worth, of the worker's 64 × 16 KiB (its spilled chunks count as buffers).
pub(super) const HELD_MAX: usize = 4;

/// Whether connections accepted on `listener` get a multishot receive: TCP ones (see the
/// module's notes on Unix sockets).
pub(super) fn multishot_suits(listener: &OwnedFd) -> bool {
    socket2::SockRef::from(listener)
        .local_addr()
        .is_ok_and(|addr| addr.is_ipv4() || addr.is_ipv6())
}

/// An echo or discard connection's state.
#[derive(Debug, Default)]
pub(super) struct Stream {
    /// Received, not yet sent back (echo only): the oldest is the one being sent.
    pub(super) queue: Queue,
    /// A receive is in flight: its last completion has not come (it lacks `MORE`).
    receiving: bool,
    /// That receive's cancel is queued.
    cancelling: bool,
    /// A send is in flight: the oldest chunk of its spill, if it has one in the worker's
    /// `spills` (a send from the queue is made only once the spill is empty), else the
    /// queue's oldest buffer.
    pub(super) sending: bool,
    /// The send in flight from the queue is being cancelled, for its buffers to be spilled.
    pub(super) unpinning: bool,
    /// The receive found no free buffer: the slot waits in the worker's `starved` list.
    starved: bool,
    /// The client's end of stream came: send back what is queued, then close.
    ended: bool,
    /// Close as soon as nothing is in flight (an error, or the server is closing).
    pub(super) failed: bool,
    /// Its index in the worker's table of registered descriptors, if it has one.
    fixed: Option<u32>,
    /// Sends completed, counted up to [`REGISTER_AFTER`].
    sent: u8,
}

/// The worker's table of registered descriptors (`IORING_REGISTER_FILES`): a request on a
/// registered descriptor skips the lookup and reference count (`fget`/`fput`) that a plain
/// descriptor costs on every send.
pub(super) enum FileTable {
    /// Not asked for yet: made when a stream first registers.
    Unset,
    /// The free indices.
    Ready(Vec<u32>),
    /// The kernel refused the table: plain descriptors.
    Unavailable,
}

/// Registered descriptors per worker; streams beyond them use plain ones.
const FIXED_SLOTS: u32 = 1024;

/// The sends after which a stream's descriptor is registered: registering and
/// unregistering are a system call each, which a connection that echoes a line and goes
/// would pay for nothing; one that keeps sending saves a file lookup on every send after.
const REGISTER_AFTER: u8 = 4;

impl Worker {
    /// Starts the stream of an admitted echo or discard connection.
    pub(super) fn start_stream(&mut self, slot: usize) {
        if let Some(conn) = self.conns.get_mut(slot) {
            conn.set_stream(Stream::default());
            self.advance(slot);
        }
    }

    /// Puts `fd` in the table of registered descriptors, if there is room.
    fn register_fixed(&mut self, fd: std::os::fd::RawFd) -> Option<u32> {
        if matches!(self.files, FileTable::Unset) {
            self.files = match self.ring.submitter().register_files_sparse(FIXED_SLOTS) {
                Ok(()) => FileTable::Ready((0..FIXED_SLOTS).rev().collect()),
                Err(err) => {
                    tracing::debug!("io_uring: no registered descriptors: {err}");
                    FileTable::Unavailable
                }
            };
        }
        let FileTable::Ready(free) = &mut self.files else {
            return None;
        };
        let index = free.pop()?;
        match self.ring.submitter().register_files_update(index, &[fd]) {
            Ok(_) => Some(index),
            Err(_) => {
                free.push(index);
                None
            }
        }
    }

    /// Takes a closing stream's descriptor out of the table.
    fn unregister_fixed(&mut self, index: u32) {
        if self
            .ring
            .submitter()
            .register_files_update(index, &[-1])
            .is_ok()
            && let FileTable::Ready(free) = &mut self.files
        {
            free.push(index);
        }
    }

    /// Receives again for a connection that waited for a free buffer.
    pub(super) fn receive(&mut self, slot: usize) {
        if let Some(stream) = self.conns.get_mut(slot).and_then(|conn| conn.stream_mut()) {
            stream.starved = false;
            self.advance(slot);
        }
    }

    /// Ends a connection's stream: it closes once nothing of it is in flight.
    pub(super) fn fail(&mut self, slot: usize) {
        if let Some(stream) = self.conns.get_mut(slot).and_then(|conn| conn.stream_mut()) {
            stream.failed = true;
            self.advance(slot);
        }
    }

    /// A receive completed with `result`.
    pub(super) fn received(&mut self, slot: usize, result: i32, flags: u32) {
        let bid = cqueue::buffer_select(flags);
        if bid.is_some() {
            self.buffers_out += 1;
        }
        let forced = self.forced;
        let echo = matches!(self.routine, RingRoutine::Echo);
        let Some(conn) = self.conns.get_mut(slot) else {
            return self.give_back_opt(bid);
        };
        if let (Ok(len @ 1..), Some(meter)) = (usize::try_from(result), &mut conn.meter) {
            meter.received(len);
        }
        let Some((stream, meter)) = conn.stream_and_meter() else {
            return self.give_back_opt(bid);
        };
        let cancelled = stream.cancelling && was_cancelled(result);
        if !cqueue::more(flags) {
            stream.receiving = false;
            stream.cancelling = false;
        }
        // A buffer not queued for the echo goes back at once.
        let mut returned = bid;
        match (usize::try_from(result), bid) {
            (Ok(len @ 1..), Some(bid)) => {
                if let (Some(buffers), true) =
                    (&mut self.buffers, echo && !stream.failed && !forced)
                {
                    buffers.enqueue(&mut stream.queue, bid, len);
                    returned = None;
                }
            }
            (Ok(0), _) => stream.ended = true,
            _ if result == -libc::ENOBUFS && !forced => {
                stream.starved = true;
                self.starved.push(slot);
                // What holds the buffers is spilled at the end of the turn.
                self.starving = true;
            }
            // The cancel of a connection holding its share of buffers, or of one closing.
            _ if cancelled || result == -libc::ECANCELED => {}
            // A kernel without the multishot receive, or without its byte limit (before
            // Linux 6.17, which refuses the limit): one receive per block from now on,
            // which holds one buffer at a time.
            _ if result == -libc::EINVAL && self.multishot => {
                tracing::debug!(
                    "io_uring: no multishot receive with a byte limit here; one receive per block"
                );
                self.multishot = false;
            }
            _ => {
                stream.failed = true;
                note_failure(meter, result);
            }
        }
        if forced {
            stream.failed = true;
        }
        self.give_back_opt(returned);
        self.advance(slot);
    }

    /// The send of a connection's oldest buffer completed with `result`. If it was being
    /// cancelled for the buffers to be freed (`spill.rs`), what it did not send goes to the
    /// spill with the rest of the queue.
    pub(super) fn stream_sent(&mut self, slot: usize, result: i32) {
        let (Some(conn), Some(buffers)) = (self.conns.get_mut(slot), &mut self.buffers) else {
            return;
        };
        let Some((stream, meter)) = conn.stream_and_meter() else {
            return;
        };
        stream.sending = false;
        let unpinning = std::mem::take(&mut stream.unpinning);
        let len = buffers
            .front(&stream.queue)
            .map_or(0, |(_, bytes)| bytes.len());
        // A cancelled send reports the bytes it had sent, or that it was cancelled for none.
        let taken = match usize::try_from(result) {
            Ok(sent) => Some(sent.min(len)),
            Err(_) if unpinning && was_cancelled(result) => Some(0),
            Err(_) => None,
        };
        let complete = taken == Some(len);
        if taken.is_none() || !(complete || unpinning) {
            note_send_failure(meter, result);
        }
        // Counted when it all went, or as much as went of a send cancelled for the spill.
        let metered = taken.filter(|_| complete || unpinning).unwrap_or(0);
        if unpinning
            && !complete
            && let Some(taken) = taken
        {
            if let (1.., Some(meter)) = (metered, &mut conn.meter) {
                meter.sent(metered);
            }
            self.spill_queue(slot, taken);
            return self.advance(slot);
        }
        let Some(bid) = buffers.dequeue(&mut stream.queue) else {
            return;
        };
        stream.failed |= !complete;
        stream.sent = stream.sent.saturating_add(1);
        let register = stream.fixed.is_none() && stream.sent == REGISTER_AFTER;
        if let (1.., Some(meter)) = (metered, &mut conn.meter) {
            meter.sent(metered);
        }
        let fd = conn.fd;
        if unpinning && complete {
            self.spill_queue(slot, 0);
        }
        self.give_back(bid);
        if register {
            let fixed = self.register_fixed(fd);
            if let Some(stream) = self.conns.get_mut(slot).and_then(|conn| conn.stream_mut()) {
                stream.fixed = fixed;
            }
        }
        self.advance(slot);
    }

    /// Posts what a connection's stream needs next: the oldest buffer's send, a receive,
    /// the receive's cancel, or, once nothing is in flight and the stream is over, the close.
    pub(super) fn advance(&mut self, slot: usize) {
        let multishot = self.multishot;
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let fd = conn.fd;
        let Some(stream) = conn.stream_mut() else {
            return;
        };
        let mut entries: [Option<squeue::Entry>; 2] = [None, None];
        // `spills` is empty until the buffers run out, and a lookup in an empty map hashes
        // nothing: the common path pays no more than a length check.
        let spill = self.spills.get(&slot);
        if !stream.sending && !stream.failed {
            // The spill's bytes are older than the queue's.
            let next = match spill.and_then(spill::Spill::front) {
                Some(bytes) => Some((bytes, SPILL_SEND)),
                None => self
                    .buffers
                    .as_ref()
                    .and_then(|b| b.front(&stream.queue))
                    .map(|(_, bytes)| (bytes, SEND)),
            };
            if let Some((bytes, kind)) = next {
                entries[0] = Some(send(fd, stream.fixed, bytes, token(slot, kind)));
                stream.sending = true;
            }
        }
        let spilled = spill.map_or(0, spill::Spill::len);
        let over = stream.failed || (stream.ended && stream.queue.len() == 0 && spilled == 0);
        let full = stream.queue.len() + spilled >= HELD_MAX;
        if stream.receiving {
            if (over || full) && !stream.cancelling {
                stream.cancelling = true;
                entries[1] = Some(
                    opcode::AsyncCancel::new(token(slot, RECV))
                        .build()
                        .user_data(CANCEL),
                );
            }
        } else if over {
            if !stream.sending {
                let queue = std::mem::take(&mut stream.queue);
                if stream.starved {
                    self.starved.retain(|&starved| starved != slot);
                }
                if !self.spills.is_empty() {
                    self.spills.remove(&slot);
                }
                let fixed = stream.fixed.take();
                if let Some(index) = fixed {
                    self.unregister_fixed(index);
                }
                self.release(queue);
                return self.close_now(slot);
            }
        } else if !stream.ended && !stream.starved && !full {
            stream.receiving = true;
            // At most the buffers the connection may still hold: a multishot receive on a
            // socket with much queued fills buffer after buffer before a cancel can reach
            // it (up to all 64 of the worker's for one client that does not read).
            let allowance = (HELD_MAX - (stream.queue.len() + spilled)) * BUFFER_SIZE;
            let entry = match (multishot, stream.fixed) {
                (true, Some(index)) => limited(
                    opcode::RecvMulti::new(Fixed(index), GROUP).build(),
                    allowance,
                ),
                (true, None) => limited(opcode::RecvMulti::new(Fd(fd), GROUP).build(), allowance),
                (false, fixed) => {
                    let recv = match fixed {
                        Some(index) => opcode::Recv::new(Fixed(index), std::ptr::null_mut(), 0),
                        None => opcode::Recv::new(Fd(fd), std::ptr::null_mut(), 0),
                    };
                    recv.buf_group(GROUP)
                        .build()
                        .flags(squeue::Flags::BUFFER_SELECT)
                }
            };
            entries[1] = Some(entry.user_data(token(slot, RECV)));
        }
        for entry in entries.iter().flatten() {
            self.push(entry);
        }
    }

    /// Gives back every buffer of a closing connection's queue.
    fn release(&mut self, mut queue: Queue) {
        while let Some(bid) = self.buffers.as_mut().and_then(|b| b.dequeue(&mut queue)) {
            self.give_back(bid);
        }
    }

    fn give_back_opt(&mut self, bid: Option<u16>) {
        if let Some(bid) = bid {
            self.give_back(bid);
        }
    }
}

/// `entry`, a multishot receive, ended by the kernel once it has received `bytes` (the
/// request's `optlen`, Linux 6.17: the completion that reaches it comes without `MORE`).
/// Kernels before it refuse the field (`EINVAL`: it was `file_index`, which a receive may
/// not have), and the worker then receives one block at a time.
fn limited(entry: squeue::Entry, bytes: usize) -> squeue::Entry {
    /// Where the kernel's `struct io_uring_sqe` keeps `optlen` (the union with
    /// `splice_fd_in` and `file_index`): a fixed part of the system call's ABI.
    const OPTLEN: usize = 44;
    // SAFETY: `squeue::Entry` is `#[repr(C)]` around the kernel's 64-byte submission entry
    // (the transmute checks the size), whose every bit pattern is a valid value; only the
    // four bytes of `optlen` change, which the builder left zero.
    let mut raw: [u8; 64] = unsafe { std::mem::transmute(entry) };
    let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
    raw[OPTLEN..OPTLEN + 4].copy_from_slice(&bytes.to_ne_bytes());
    // SAFETY: as above, the same bytes back into the type they came from.
    unsafe { std::mem::transmute::<[u8; 64], squeue::Entry>(raw) }
}

/// The send of `bytes` on the stream's descriptor `fd` (or its registered `fixed` index),
/// whose completion comes with `user_data`: from the queue or from the spill, one request.
fn send(fd: RawFd, fixed: Option<u32>, bytes: &[u8], user_data: u64) -> squeue::Entry {
    // A buffer or a spilled chunk is 16 KiB at most.
    let (ptr, len) = (bytes.as_ptr(), bytes.len() as u32);
    let send = match fixed {
        Some(index) => opcode::Send::new(Fixed(index), ptr, len),
        None => opcode::Send::new(Fd(fd), ptr, len),
    };
    send.flags(SEND_FLAGS).build().user_data(user_data)
}

/// Whether `result` ends an operation this worker cancelled: `ECANCELED`, or `EINTR` from
/// one the kernel was running on a thread of its own (io-wq: a send or receive that could
/// not go without blocking, as on a Unix socket under load), which the cancel interrupts
/// rather than cancels. Taken for a failure, it closed an echo stream short with a clean
/// end, its spill unsent.
pub(super) fn was_cancelled(result: i32) -> bool {
    result == -libc::ECANCELED || result == -libc::EINTR
}

/// Notes a receive's or send's failure (`result`, a negated errno) for the connection's
/// `closed` line, as the epoll engine's connections do.
fn note_failure(meter: &mut Option<Box<Meter>>, result: i32) {
    if let (Some(meter), true) = (meter, result < 0) {
        meter.failed(&std::io::Error::from_raw_os_error(-result));
    }
}

/// Notes a send that failed: its errno, or for one cut short (`MSG_WAITALL` sends it all
/// unless the connection fails, and then says what went before, not why), that.
pub(super) fn note_send_failure(meter: &mut Option<Box<Meter>>, result: i32) {
    match (meter, result < 0) {
        (meter, true) => note_failure(meter, result),
        (Some(meter), false) => meter.failed(&std::io::Error::other(
            "a send was cut short: the connection was reset or closed",
        )),
        (None, false) => {}
    }
}
