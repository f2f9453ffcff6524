//! The stream bridge: input to socket on one thread, socket to output on the caller's, with
//! the half-close and idle rules of the module documentation.

use std::io::{self, Write};
use std::net::Shutdown;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::input::Input;
use super::output::Output;
use crate::error::{Error, Op, Result};
use crate::net::{self, Activity};
use crate::socket::{Address, Socket};
pub(crate) use pauses::{Acknowledged, InputPauses, next_to_send};
use receive::receive;
pub(crate) use send::{Answers, end_sending, waits_for_input};
use send::{SendEnd, Sender, Sending, deliver, send_input};

mod pauses;
mod receive;
mod send;

/// How often a waiting side looks up from its wait to see whether the bridge is over.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// After the peer closed, how long input that is already waiting may take to go out; and
/// the pause in the input that ends its sending then (see [`InputPauses`]).
pub(crate) const LINGER: Duration = Duration::from_secs(1);

/// The longest pause between two looks at what the peer has acknowledged (send-only).
pub(crate) const ACK_POLL: Duration = Duration::from_millis(20);

/// How a bridge ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeEnd {
    /// The peer closed the connection (or, for datagrams, went quiet after the input ended)
    /// and everything it sent was written out.
    PeerClosed,
    /// The output was closed (a broken pipe); the rest of the peer's bytes were not wanted.
    OutputClosed,
}

/// Limits of a bridge.
#[derive(Debug, Clone, Default)]
pub struct BridgeOptions {
    /// The peer, as errors name it; by default the socket is asked when the bridge starts
    /// (give it when it is known from `accept`: a peer that reset at once has no address
    /// left to ask for).
    pub peer: Option<Address>,
    /// How errors name the peer where its address would mislead: a target reached through
    /// a proxy (`tcp:example.com:80 through socks5://127.0.0.1:1080`), whose socket's peer is
    /// the proxy.
    pub peer_name: Option<String>,
    /// Give up when no byte has moved either way for this long (an error).
    pub idle_timeout: Option<Duration>,
    /// Datagrams only: after the input ends, how long to wait for further replies.
    pub wait: Duration,
    /// Streams only: where to count the bytes received from and sent to the peer, as they
    /// move (for a listener's metrics).
    pub counts: Option<Arc<ByteCounts>>,
    /// Which ways bytes move (`--send-only`, `--recv-only`).
    pub direction: Direction,
    /// Streams, both ways: at the end of the input, leave the socket open for sending
    /// rather than half-closing it (`ncat --no-shutdown`), for peers and proxies that take
    /// a half-close as the end of the whole connection; the bridge ends when the peer
    /// closes.
    pub keep_write_open: bool,
    /// The input serves connection after connection (`socketkit listen -k`): once the peer
    /// has closed, input still waiting is kept for the next connection rather than sent to
    /// this one, whose peer would never read it.
    pub shared_input: bool,
}

/// Which ways a bridge moves bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Direction {
    /// Input to the peer and the peer to the output.
    #[default]
    Both,
    /// Input to the peer only: what the peer sends is read and dropped, and the end of the
    /// input ends the bridge (`ncat --send-only`) once the peer has every byte: the
    /// half-close is made, and over TCP the bridge waits for the peer's kernel to
    /// acknowledge all of it (closing earlier, with the peer's replies unread, would reset
    /// the connection and drop what was still on its way).
    SendOnly,
    /// The peer to the output only: the input is never read, and the socket is not
    /// half-closed (`ncat --recv-only`).
    ReceiveOnly,
}

/// Bytes a bridge moved each way; see [`BridgeOptions::counts`].
#[derive(Debug, Default)]
pub struct ByteCounts {
    /// Bytes received from the peer.
    pub received: AtomicU64,
    /// Bytes sent to the peer.
    pub sent: AtomicU64,
}

impl ByteCounts {
    pub(crate) fn add(counter: Option<&AtomicU64>, n: usize) {
        if let Some(counter) = counter {
            counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }
}

/// Bridges a connected stream `socket` with `input` and `output` until the peer closes; a
/// datagram socket (what [`connect`](super::connect) gives for `udp:` and `unixgram:`) is
/// bridged as [`bridge_datagrams`](super::bridge_datagrams) bridges it, for a datagram
/// peer never closes.
///
/// # Errors
///
/// A reset or failed read from the socket (`cannot receive from ADDRESS: connection reset
/// by peer`), the idle timeout, an output that fails other than by closing, or an input
/// that fails ([`Next::Failed`](super::Next::Failed): the connection is reset first).
///
/// # Examples
///
/// ```
/// use socketkit::client::{BridgeEnd, BridgeOptions, Input, Output, bridge};
/// let (mut ours, theirs) = socketkit::socket::socketpair()?;
/// let peer = std::thread::spawn(move || {
///     let got = theirs.recv(64).unwrap();   // "ping", then our half-close
///     theirs.sendall(b"pong").unwrap();
///     got
/// });
/// let input = Input::spawn(&b"ping"[..], 1024)?;
/// let mut output = Vec::new();
/// let end = bridge(&mut ours, &input, Output::writer(&mut output), BridgeOptions::default())?;
/// assert_eq!(end, BridgeEnd::PeerClosed);
/// assert_eq!(output, b"pong");
/// assert_eq!(peer.join().unwrap(), b"ping");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn bridge(
    socket: &mut Socket,
    input: &Input,
    output: Output<'_>,
    options: BridgeOptions,
) -> Result<BridgeEnd> {
    if socket.is_datagram() {
        return super::bridge_datagrams(socket, input, output, options);
    }
    let activity = Activity::new();
    let done = AtomicBool::new(false);
    if let Some(idle) = options.idle_timeout {
        socket.set_timeout(Some(tick(idle)))?;
    } else {
        // A send that waits comes back with what it took (see `send_whole`).
        socket.set_send_wait(POLL)?;
    }
    let socket = &*socket;
    let output = match options.direction {
        Direction::SendOnly => Output::writer(io::sink()),
        _ => output,
    };
    // Remembered now: after a reset the kernel no longer knows who the peer was.
    let peer = Peer::of(socket, &options);
    let counts = options.counts.as_deref();
    // What the peer sent, counted here when the caller does not count it.
    let heard = AtomicU64::new(0);
    let (received, sent) = (
        counts.map_or(&heard, |c| &c.received),
        counts.map(|c| &c.sent),
    );
    let received_before = received.load(Ordering::Relaxed);
    let delivered = AtomicBool::new(false);
    // Set while the sender has bytes the peer has not taken yet (see `send_input`).
    let in_send = AtomicBool::new(false);
    // Set when the bridge ended by the peer's end of stream (not an error), and when that
    // stream was empty: only then may the sender go on (see `send_input`).
    let peer_closed = AtomicBool::new(false);
    let peer_silent = AtomicBool::new(false);
    let output_gone = AtomicBool::new(false);
    let answers = Answers::new();
    let end = thread::scope(|scope| {
        let (finished, sender_done) = mpsc::channel();
        let (done, activity, delivered) = (&done, &activity, &delivered);
        let (in_send, peer_closed, peer_silent) = (&in_send, &peer_closed, &peer_silent);
        let (output_gone, answers) = (&output_gone, &answers);
        let sending = Sending {
            direction: options.direction,
            half_close: !options.keep_write_open,
            shared: options.shared_input,
            idle: options.idle_timeout,
        };
        let direction = sending.direction;
        let sender = thread::Builder::new().spawn_scoped(scope, move || {
            let sender = Sender {
                socket,
                activity,
                in_send,
                peer_closed,
                peer_silent,
                output_gone,
                answers,
                received,
            };
            let send_end = send_input(input, &sender, done, sent, sending);
            let ended = matches!(send_end, SendEnd::Ended);
            if ended && direction == Direction::SendOnly && deliver(socket, done) {
                delivered.store(true, Ordering::Release);
                // Held by the peer's kernel is not yet taken by the peer: one that answers
                // each command (redis) is still working through them, and a close now
                // resets the connection at its next answer, which makes it drop the rest.
                // So a peer that has answered the input (sent bytes after its first went
                // out) is waited for until it closes, however long one command takes
                // (`DEBUG SLEEP 2`); one that has not (silent, or a banner before the input),
                // until it has been quiet for LINGER.
                send::until_done_or_quiet(done, activity, LINGER, || {
                    answers.answered(send::heard_so_far(socket, received))
                });
                // Wakes the receive. The peer's bytes that still arrive make the kernel
                // reset the connection, which is no failure any more: ours are all there.
                let _ = socket.shutdown(Shutdown::Read);
            }
            let _ = finished.send(());
            send_end
        });
        let sender = match sender {
            Ok(sender) => sender,
            Err(err) => return Err(thread_error(err)),
        };
        let end = receive(
            socket,
            &peer,
            output,
            activity,
            options.idle_timeout,
            Some(received),
        );
        peer_closed.store(matches!(end, Ok(BridgeEnd::PeerClosed)), Ordering::Relaxed);
        peer_silent.store(
            received.load(Ordering::Relaxed) == received_before,
            Ordering::Relaxed,
        );
        output_gone.store(
            matches!(end, Ok(BridgeEnd::OutputClosed)),
            Ordering::Release,
        );
        end_sending(done, input);
        // Input already read goes out first (a peer that half-closed may still read it),
        // unless the input is shared, or nobody reads the output any more (what is left
        // to send is not wanted either, and a sender blocked on a peer that stopped
        // reading would hold the end back for the whole linger).
        // A sender still busy after LINGER is blocked on a peer that stopped reading:
        // shutting the socket down wakes it, so the scope can end.
        let linger = match end {
            Ok(BridgeEnd::OutputClosed) => Duration::ZERO,
            _ => LINGER,
        };
        // A sender that still sends input as it comes (see `InputPauses`) is waited
        // for as long as it makes progress; one waiting for input stops by itself. One whose
        // peer is known to read on (`waits_for_input`: a receiver that half-closed
        // without a word, a Unix peer, send-only) is waited for however slowly that peer
        // reads: its sends time out by themselves at the idle limit, if there is one.
        let reads_on = matches!(end, Ok(BridgeEnd::PeerClosed))
            && waits_for_input(
                send::connection_of(socket),
                peer_silent.load(Ordering::Relaxed),
                false,
                options.direction,
            );
        // What the peer took while the sender did not see it (see `Acknowledged`).
        let mut acknowledged = Acknowledged::new(socket.fileno());
        let stuck = loop {
            let asked = std::time::Instant::now();
            match sender_done.recv_timeout(linger) {
                Err(mpsc::RecvTimeoutError::Timeout)
                    if linger.is_zero()
                        || (!reads_on
                            && in_send.load(Ordering::Relaxed)
                            && activity.quiet_for() >= linger
                            && !acknowledged.excuses(asked, linger)) =>
                {
                    break true;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => break false,
            }
        };
        // Input was still going to a peer that closed its side and stopped reading: the
        // transfer is cut, which the peer must not take for its end (a reset, not a FIN)
        // nor the user for a success (exit 1). With the output gone, the rest was not
        // wanted: the sending just stops.
        let cut = stuck && !linger.is_zero();
        if cut {
            net::reset_now(std::os::fd::AsFd::as_fd(socket));
        } else if stuck {
            let _ = socket.shutdown(Shutdown::Both);
        }
        match (end, sender.join()) {
            // However the receiving side saw the reset that followed it.
            (_, Ok(SendEnd::InputFailed(err))) => Err(err),
            _ if cut => Err(peer.error(Op::Send, not_taken(linger))),
            // The kernel reports a reset once, to whichever call comes first: when it was
            // the send's, the receive found a plain end of stream.
            // Named as the receiving side names the peer (through a proxy, the target
            // and the proxy, not the proxy's address alone).
            (Ok(BridgeEnd::PeerClosed), Ok(SendEnd::Reset(err))) => Err(peer.error(Op::Send, err)),
            (Ok(BridgeEnd::PeerClosed), Ok(SendEnd::IdleOut)) => Err(idle_error(
                &peer,
                Op::Send,
                options.idle_timeout.unwrap_or_default(),
            )),
            (end, _) => end,
        }
    });
    if options.idle_timeout.is_none() {
        // The caller's socket as it was given (a failure here changes nothing the bridge did).
        let _ = socket.restore_send_timeout();
    }
    // Send-only: once the peer holds every byte, how the receiving side ended is not ours
    // to report.
    if delivered.load(Ordering::Acquire) {
        return Ok(BridgeEnd::PeerClosed);
    }
    end
}

/// Whether the peer's kernel has acknowledged every byte written to the TCP socket `fd`,
/// and its FIN; where the system cannot tell, yes.
pub(crate) fn all_acknowledged(fd: RawFd) -> bool {
    match net::unacknowledged(fd) {
        Ok(queued) => queued == 0,
        Err(err) => {
            tracing::debug!("cannot tell what the peer acknowledged ({err}); taken as all");
            true
        }
    }
}

/// The interval at which a receive wakes to check an idle limit: a quarter of it, so the
/// limit is kept to within 25%.
pub(crate) fn tick(limit: Duration) -> Duration {
    (limit / 4).max(Duration::from_millis(10))
}

/// The peer of a bridge, as it was when the bridge started, for naming it in errors.
#[derive(Debug)]
pub(crate) struct Peer(pub(crate) Option<String>);

impl Peer {
    /// The peer a bridge names in its errors: as `options` name it, else the socket's
    /// address. The socket remembers it from its connect, for a reset that came first leaves
    /// `getpeername` nothing to say.
    pub(crate) fn of(socket: &Socket, options: &BridgeOptions) -> Peer {
        if let Some(name) = &options.peer_name {
            return Peer(Some(name.clone()));
        }
        let asked = || socket.peer_addr().ok();
        let address = options
            .peer
            .clone()
            .or_else(asked)
            .or_else(|| socket.known_peer());
        Peer(address.map(|address| address.to_string()))
    }

    /// `err` from `op`, naming the peer when it is known.
    pub(crate) fn error(&self, op: Op, err: io::Error) -> Error {
        match &self.0 {
            Some(peer) => Error::new(op, peer, err),
            None => Error::without_target(op, err),
        }
    }
}

/// Turns a receive timeout into the idle error once the whole limit has passed quietly.
pub(crate) fn check_idle(
    peer: &Peer,
    activity: &Activity,
    idle: Option<Duration>,
    timeout: Error,
) -> Result<()> {
    let Some(limit) = idle else {
        return Err(timeout);
    };
    if activity.quiet_for() < limit {
        return Ok(());
    }
    Err(idle_error(peer, Op::Receive, limit))
}

/// The error of a connection on which no byte moved either way for `limit`.
pub(crate) fn idle_error(peer: &Peer, op: Op, limit: Duration) -> Error {
    let reason = io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "no data either way for {}",
            humantime::format_duration(limit)
        ),
    );
    peer.error(op, reason)
}

/// The end of a bridge whose peer closed: the output flushed, or what its failure means.
pub(crate) fn finish<W: Write + ?Sized>(output: &mut W) -> Result<BridgeEnd> {
    match output.flush() {
        Ok(()) => Ok(BridgeEnd::PeerClosed),
        Err(err) => output_failed(err),
    }
}

/// A failed write to the output: its reader leaving ends the bridge quietly
/// ([`BridgeEnd::OutputClosed`]); anything else is an error naming the output.
pub(crate) fn output_failed(err: io::Error) -> Result<BridgeEnd> {
    if err.kind() == io::ErrorKind::BrokenPipe {
        Ok(BridgeEnd::OutputClosed)
    } else {
        Err(Error::new(Op::Io, "output", err))
    }
}

/// A thread of the bridge that could not be started (a thread limit: `ulimit -u`, a
/// container's pids limit), as the error it ends with.
pub(crate) fn thread_error(err: io::Error) -> Error {
    Error::new(Op::Spawn, "a thread", err)
}

/// Why input went unsent to a peer that closed its side and then took none of it for
/// `linger`: the connection was reset, and the run fails with this.
pub(crate) fn not_taken(linger: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "the peer closed its side and took no input for {}: the rest of the input was \
             not sent, and the connection was reset",
            humantime::format_duration(linger)
        ),
    )
}
