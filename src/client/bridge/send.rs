//! The sending side of a bridge: input to the socket, the half-close when it ends, and,
//! send-only, the wait until the peer holds every byte.

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use super::pauses::{InputPauses, next_to_send};
use super::{ACK_POLL, ByteCounts, Direction, all_acknowledged};
use crate::client::input::{Input, Next};
use crate::error::{Error, Op, Result};
use crate::net::{self, Activity};
use crate::socket::{Family, Socket};

/// Send-only, after the input ended and was half-closed: waits until the peer's kernel has
/// acknowledged every byte (TCP; a Unix socket's bytes are in the peer's queue once
/// written, and where the system cannot tell they are taken as delivered). False when the
/// input did not end that way or the bridge ended first with bytes unacknowledged (the peer
/// reset, or the idle limit passed).
pub(super) fn deliver(socket: &Socket, done: &AtomicBool) -> bool {
    if !matches!(socket.family(), Family::Inet | Family::Inet6) {
        return true;
    }
    // On loopback the acknowledgement takes microseconds; across a network, a round trip.
    let mut pause = Duration::from_millis(1);
    loop {
        if all_acknowledged(socket.fileno()) {
            return true;
        }
        if done.load(Ordering::Relaxed) {
            return false;
        }
        thread::sleep(pause);
        pause = (pause * 2).min(ACK_POLL);
    }
}

/// Waits until the bridge is `done` (the peer closed, or the idle limit ended it) or nothing
/// has moved for `quiet` while the peer has not `answered` (see `Direction::SendOnly`'s
/// delivery).
pub(super) fn until_done_or_quiet(
    done: &AtomicBool,
    activity: &Activity,
    quiet: Duration,
    answered: impl Fn() -> bool,
) {
    while !done.load(Ordering::Relaxed) {
        let left = quiet.saturating_sub(activity.quiet_for());
        if left.is_zero() && !answered() {
            return;
        }
        thread::sleep(if left.is_zero() {
            ACK_POLL
        } else {
            left.min(ACK_POLL)
        });
    }
}

/// Whether the peer has answered the input: what it had sent (`heard`, in bytes) when the
/// first input went out, against what it has sent since. Send-only's delivery waits for a
/// peer that answered (it is still working through the input) until it closes.
#[derive(Debug)]
pub(crate) struct Answers {
    /// `u64::MAX` until the first input goes out.
    heard_at_first_send: AtomicU64,
}

impl Answers {
    pub(crate) fn new() -> Answers {
        Answers {
            heard_at_first_send: AtomicU64::new(u64::MAX),
        }
    }

    /// Input goes out now, the peer having sent `heard`: remembered the first time.
    pub(crate) fn input_goes(&self, heard: u64) {
        let _ = self.heard_at_first_send.compare_exchange(
            u64::MAX,
            heard,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Whether the peer has sent bytes (`heard` now) since the first input went out.
    pub(crate) fn answered(&self, heard: u64) -> bool {
        let from = self.heard_at_first_send.load(Ordering::Relaxed);
        from != u64::MAX && heard > from
    }
}

/// What the peer of the stream `socket` has sent so far, in bytes, whether the receiving
/// side has `read` it yet or not: a banner that arrived before the input is no answer to
/// it, however late the receiving thread gets to it. The kernel's count where it keeps one
/// (TCP on Linux: exact); elsewhere what was read and what waits in the receive queue (a
/// chunk between the two, taken by `recv` but not yet counted, can still be missed).
pub(crate) fn heard_so_far(socket: &Socket, read: &AtomicU64) -> u64 {
    if matches!(socket.family(), Family::Inet | Family::Inet6)
        && let Ok(received) = net::tcp_bytes_received(socket.as_fd())
    {
        return received;
    }
    let queued = net::receive_queued(socket.fileno()).unwrap_or(0);
    read.load(Ordering::Relaxed)
        .saturating_add(u64::try_from(queued).unwrap_or(u64::MAX))
}

/// Whether input the peer refused with a reset after its own end was owed to it: the peer
/// said nothing (a receiver, `listen </dev/null > file`, whose FIN did not say whether it
/// reads on), or the input is to go whole (send-only). A peer that answered and closed
/// was owed no more.
fn input_was_owed(socket: &Socket, received: &AtomicU64, direction: Direction) -> bool {
    if direction == Direction::SendOnly {
        return true;
    }
    // The kernel's count takes the peer's FIN (which came first: `EPIPE` says so) for a
    // byte.
    if connection_of(socket).1
        && let Ok(heard) = net::tcp_bytes_received(socket.as_fd())
    {
        return heard <= 1;
    }
    heard_so_far(socket, received) == 0
}

/// How the sending side of a bridge ended.
pub(super) enum SendEnd {
    /// The input ended, and the half-close was made.
    Ended,
    /// The peer reset the connection without closing it first (`ECONNRESET`; a reset
    /// after the peer's FIN, for bytes it no longer wanted, is `EPIPE`): the OS error, which
    /// the bridge names its peer in (see `Peer`).
    Reset(io::Error),
    /// The idle limit passed while the sender waited on a peer that reads on (it had ended
    /// its side, so the receiving side was over and could not time it out).
    IdleOut,
    /// Reading the input failed: the connection was reset, so that the peer does not take
    /// the end of what it got for the end of the data.
    InputFailed(Error),
    /// Anything else: the receiving side knows how the connection ended.
    Stopped,
}

/// Whether a sender whose peer has ended its side waits on through a pause in its input
/// rather than end: whether the rest of the input may still be wanted.
///
/// Not when the peer is gone: a Unix peer that closed (the socket reports a hang-up at
/// once), a TCP peer whose kernel answered our bytes with a reset. A Unix peer that only
/// half-closed still reads. A TCP FIN alone looks the same whether the peer half-closed
/// and reads on or closed; what the peer did tells them apart well enough: one that ended
/// its side without a word (`silent`) is a receiver — `listen </dev/null > file` — and
/// gets the input to its end, however long it pauses (cut at a pause, the rest of a
/// transfer would be lost without a word); one that took bytes sent after its FIN
/// (`sent_since_close`, a second and more ago: a closed socket answers them with a reset
/// within a round trip) reads on too. One that answered and then closed (the tutorial's
/// greeting, a server's reply) is done: the input's quiet ends the sending. Send-only, the
/// input is what the user asked to deliver: it is sent to its end.
/// `tcp`: the connection of `fd` is TCP (a TLS session's too), not Unix.
pub(crate) fn waits_for_input(
    (fd, tcp): (RawFd, bool),
    silent: bool,
    sent_since_close: bool,
    direction: Direction,
) -> bool {
    if net::reader_gone(fd) {
        return false;
    }
    !tcp || silent || sent_since_close || direction == Direction::SendOnly
}

/// `socket` as [`waits_for_input`] takes it.
pub(super) fn connection_of(socket: &Socket) -> (RawFd, bool) {
    let tcp = matches!(socket.family(), Family::Inet | Family::Inet6);
    (socket.fileno(), tcp)
}

/// Tells a bridge's sender that the bridge is over (`done`), and wakes it from its wait for
/// input: a shared input's next bytes are the next connection's, and a sender whose input
/// has paused ends now rather than at the end of its [`POLL`](super::POLL) — which held
/// the exit (and a TLS session's close_notify) up to 100 ms after the peer closed.
pub(crate) fn end_sending(done: &AtomicBool, input: &Input) {
    // Release: what was set before it (how the bridge ended) is seen with it.
    done.store(true, Ordering::Release);
    input.wake();
}

/// How the sending side of a bridge sends: the options that concern it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sending {
    pub(super) direction: Direction,
    pub(super) half_close: bool,
    pub(super) shared: bool,
    /// The idle limit, whose tick is the socket's timeout (see [`send_whole`]).
    pub(super) idle: Option<Duration>,
}

/// Sends all of `buf`. The socket's send timeout is a tick (the idle limit's, else
/// [`POLL`](super::POLL)), so a `send(2)` that waits comes back with what it took so far,
/// or with none after a tick: each piece counts as activity when it goes, so that a peer
/// reading slowly is seen taking bytes (a send of a whole chunk without a timeout returns
/// only once all of it is queued, a second or more for a slow reader). A send that took nothing is made
/// again while the connection is within the idle limit. A peer that keeps up costs one
/// `send(2)` per chunk, as a send without a timeout does.
fn send_whole(
    socket: &Socket,
    mut buf: &[u8],
    activity: &Activity,
    idle: Option<Duration>,
) -> Result<()> {
    while !buf.is_empty() {
        match socket.send(buf) {
            Ok(0) => {
                let err = io::Error::from(io::ErrorKind::WriteZero);
                return Err(Error::without_target(Op::Send, err));
            }
            Ok(n) => {
                buf = &buf[n..];
                activity.touch();
            }
            Err(err)
                if err.kind() == io::ErrorKind::TimedOut
                    && idle.is_none_or(|idle| activity.quiet_for() < idle) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// The sending side's hold on the connection: the socket, where progress is noted,
/// whether bytes are waiting for the peer to take them, and whether the bridge ended by the
/// peer's end of stream and with nothing received (both set before `done`).
pub(super) struct Sender<'a> {
    pub(super) socket: &'a Socket,
    pub(super) activity: &'a Activity,
    pub(super) in_send: &'a AtomicBool,
    pub(super) peer_closed: &'a AtomicBool,
    pub(super) peer_silent: &'a AtomicBool,
    /// Set when the bridge ended because nobody reads its output any more: what is left
    /// of the input is not wanted either, paused or not.
    pub(super) output_gone: &'a AtomicBool,
    /// Whether the peer answered the input (see `Direction::SendOnly`'s delivery), from
    /// what it sent (`received`).
    pub(super) answers: &'a Answers,
    pub(super) received: &'a AtomicU64,
}

/// Sends input until it ends; once the peer has closed (`done`), only while it keeps
/// coming ([`InputPauses`]: a peer that half-closed may still read it) — and with a
/// shared input, nothing: what it reads is the next connection's.
pub(super) fn send_input(
    input: &Input,
    sender: &Sender<'_>,
    done: &AtomicBool,
    sent: Option<&AtomicU64>,
    sending: Sending,
) -> SendEnd {
    let Sender {
        socket,
        activity,
        in_send,
        peer_closed,
        peer_silent,
        output_gone,
        answers,
        received,
    } = *sender;
    if sending.direction == Direction::ReceiveOnly {
        return SendEnd::Stopped;
    }
    let shared = sending.shared.then(|| socket.fileno());
    let mut pauses = InputPauses::begin();
    // Whether bytes were sent after the peer's end was seen.
    let mut sent_since_close = false;
    loop {
        let Some(next) = next_to_send(input, done, shared, &mut pauses) else {
            return SendEnd::Stopped;
        };
        match next {
            Next::Data(buf) => {
                if pauses.none_yet() {
                    answers.input_goes(heard_so_far(socket, received));
                }
                pauses.had_input();
                let after_end = done.load(Ordering::Relaxed);
                sent_since_close |= after_end;
                in_send.store(true, Ordering::Relaxed);
                let result = send_whole(socket, &buf, activity, sending.idle);
                in_send.store(false, Ordering::Relaxed);
                match result {
                    Ok(()) => {}
                    Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {
                        return SendEnd::Reset(err.into_io_error());
                    }
                    // A Unix stream has no reset: a peer that closed with our bytes unread
                    // fails a send that was under way with `EPIPE` and leaves the receive a
                    // plain end of stream (Linux 6.18). This send's bytes were lost: said as
                    // the reset it stands for, not ended quietly. (A send begun after the
                    // peer's end was seen is input the bridge no longer owed it, as over
                    // TCP to a peer that answered: it ends quietly. A Unix peer that closed
                    // is told from one that half-closed, and ends the bridge at once.)
                    Err(err)
                        if err.kind() == io::ErrorKind::BrokenPipe
                            && !connection_of(socket).1
                            && !after_end =>
                    {
                        return SendEnd::Reset(io::Error::from_raw_os_error(libc::ECONNRESET));
                    }
                    // Over TCP `EPIPE` is the reset of a peer whose FIN came first (the
                    // kernel's word for a reset in `CLOSE_WAIT`). From a receiver that
                    // half-closed without a word and then went (killed, out of disk), it
                    // refused a transfer: said as the reset it is (exit 1, as ncat and
                    // socat), not ended quietly as nc does. From a peer that answered and
                    // closed, it is input no longer owed (the EOF model's exit 0).
                    Err(err)
                        if err.kind() == io::ErrorKind::BrokenPipe
                            && connection_of(socket).1
                            && input_was_owed(socket, received, sending.direction) =>
                    {
                        return SendEnd::Reset(io::Error::from_raw_os_error(libc::ECONNRESET));
                    }
                    // `send_whole` gives up only once the idle limit has passed.
                    Err(err) if err.kind() == io::ErrorKind::TimedOut => return SendEnd::IdleOut,
                    // The peer is gone; the receiving side reports how.
                    Err(_) => return SendEnd::Stopped,
                }
                ByteCounts::add(sent, buf.len());
                input.recycle(buf);
            }
            // A shared input's next bytes are the next connection's, paused or not; and
            // with the output's reader gone, the run ends at once (a request sent a moment
            // ago held it for the pause's whole second).
            Next::Pending
                if done.load(Ordering::Acquire)
                    && (shared.is_some() || output_gone.load(Ordering::Acquire)) =>
            {
                return SendEnd::Stopped;
            }
            Next::Pending if done.load(Ordering::Acquire) && pauses.paused(input) => {
                // Asked at each look during a pause: a peer that reads on may still go. An
                // error ended the bridge (a reset, the idle limit): nothing more is sent.
                // A peer that answered and closed is done whatever the idle limit: the
                // pause ends the run as it would without one (exit 0; the limit, shorter
                // than the pause, made it `no data either way`, exit 1).
                if !peer_closed.load(Ordering::Relaxed)
                    || !waits_for_input(
                        connection_of(socket),
                        peer_silent.load(Ordering::Relaxed),
                        sent_since_close,
                        sending.direction,
                    )
                {
                    // A peer that had closed without a word answered what was sent since
                    // with a reset, which no send met (it came after): those bytes were
                    // lost, which is said as when a send meets the reset (exit 1), not ended
                    // quietly. (A reset after the peer's FIN leaves `EPIPE` on the socket.)
                    if input_was_owed(socket, received, sending.direction)
                        && let Ok(Some(err)) = socket2::SockRef::from(socket).take_error()
                        && matches!(
                            err.kind(),
                            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                        )
                    {
                        return SendEnd::Reset(io::Error::from_raw_os_error(libc::ECONNRESET));
                    }
                    return SendEnd::Stopped;
                }
                // A peer that reads on gets the input however long it pauses, within the
                // idle limit.
                if sending
                    .idle
                    .is_some_and(|idle| activity.quiet_for() >= idle)
                {
                    return SendEnd::IdleOut;
                }
            }
            Next::Pending => {}
            Next::Failed(err) => {
                // A reset (a Unix stream has none: it is shut down both ways), which also
                // ends the receiving side's wait.
                net::reset_now(std::os::fd::AsFd::as_fd(socket));
                return SendEnd::InputFailed(err);
            }
            // Nothing more to send; the receiving side waits for the peer to close.
            Next::End if !sending.half_close => return SendEnd::Stopped,
            Next::End => {
                // Only the writing side, send-only too: shutting the reading side down
                // while the peer's bytes still arrive resets the connection (Linux answers
                // data after SHUT_RD with a reset) before ours are all delivered.
                return match socket.shutdown(Shutdown::Write) {
                    Ok(()) => SendEnd::Ended,
                    Err(_) => SendEnd::Stopped,
                };
            }
        }
    }
}
