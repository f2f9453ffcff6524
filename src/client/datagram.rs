//! The datagram bridge (UDP, Unix datagram): each input read is one datagram to the peer,
//! each datagram from the peer is written out; after the input ends, replies are awaited
//! until none has come for the `wait` duration.
//!
//! Sizes. A send carries at most [`max_datagram`] bytes: the protocol's limit for UDP, the
//! socket's send buffer for a Unix datagram (Linux refuses more with `EMSGSIZE`). A receive
//! never cuts a datagram silently ([`recv_whole`]): its buffer holds any UDP payload, grows
//! to the length of a longer Unix datagram before taking it, and a datagram the kernel cut
//! anyway (a kernel that cannot tell the length first) is warned about on the log.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use super::bridge::{
    BridgeEnd, BridgeOptions, Direction, POLL, Peer, check_idle, finish, output_failed, tick,
};
use super::input::{Input, Next};
use super::output::Output;
use crate::error::{Error, Op, Result};
use crate::net::{self, Activity};
use crate::socket::{Address, Family, Socket};

/// The largest UDP payload over IPv4: 65,535 bytes less the IPv4 (20) and UDP (8) headers.
pub const MAX_UDP_V4: usize = 65_507;

/// The largest UDP payload over IPv6 (no jumbograms): 65,535 bytes less the UDP header; the
/// IPv6 header is not counted in its payload length.
pub const MAX_UDP_V6: usize = 65_527;

/// The largest datagram every datagram transport carries (UDP over IPv4's limit): what a
/// sender that does not look at its socket may count on. A given socket may carry more:
/// see [`max_datagram`].
pub const MAX_DATAGRAM: usize = MAX_UDP_V4;

/// A receive buffer that holds any UDP payload, whatever the family.
const UDP_RECEIVE: usize = 65_535;

/// What Linux keeps of a Unix datagram socket's send buffer for its own use: a datagram may
/// be at most `SO_SNDBUF` less this (`unix_dgram_sendmsg`).
const UNIX_SEND_OVERHEAD: usize = 32;

/// The largest datagram one send on `socket` can carry, and so the most one input read
/// takes: [`MAX_UDP_V4`] or [`MAX_UDP_V6`] by the socket's family (an IPv6 socket sending
/// to an IPv4-mapped peer is held to IPv4's: a longer send fails with `EMSGSIZE`, and the
/// bridge sends such a read as two datagrams), and for a Unix datagram socket its
/// `SO_SNDBUF` less what the kernel keeps (about 208 KiB by default).
///
/// # Examples
///
/// ```
/// use socketkit::client::{MAX_UDP_V6, max_datagram};
/// use socketkit::socket::{Family, Socket, Type};
/// # if let Ok(s) = Socket::new(Family::Inet6, Type::Datagram) {
/// assert_eq!(max_datagram(&s), MAX_UDP_V6);
/// # }
/// let unix = Socket::new(Family::Unix, Type::Datagram)?;
/// assert!(max_datagram(&unix) > MAX_UDP_V6);
/// # Ok::<(), socketkit::Error>(())
/// ```
pub fn max_datagram(socket: &Socket) -> usize {
    match socket.family() {
        Family::Inet => MAX_UDP_V4,
        Family::Inet6 => MAX_UDP_V6,
        Family::Unix => socket.send_buffer_size().map_or(MAX_UDP_V4, |size| {
            size.saturating_sub(UNIX_SEND_OVERHEAD).max(1)
        }),
    }
}

/// Receives the next datagram whole into `buf`, growing it as needed, and returns its
/// length and sender: the buffer holds any UDP payload, and is grown to a longer Unix
/// datagram's length ([`Socket::peek_datagram_len`]) before it is taken. A datagram cut
/// all the same (a kernel that does not tell the length first) is returned cut, with a
/// warning on the log naming both lengths: never silently.
///
/// # Errors
///
/// The receive's (a timeout, or an ICMP error reported for an earlier send).
///
/// # Examples
///
/// ```
/// use socketkit::client::recv_whole;
/// use socketkit::socket::{Family, Socket, Type};
/// let a = Socket::new(Family::Unix, Type::Datagram)?;
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("b.sock");
/// let b = Socket::new(Family::Unix, Type::Datagram)?;
/// b.bind(path.as_path())?;
/// a.set_send_buffer_size(400_000)?;
/// a.sendto(&vec![1u8; 100_000], path.as_path())?;
/// let mut buf = Vec::new();
/// assert_eq!(recv_whole(&b, &mut buf)?.0, 100_000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn recv_whole(socket: &Socket, buf: &mut Vec<u8>) -> Result<(usize, Address)> {
    if buf.len() < UDP_RECEIVE {
        buf.resize(UDP_RECEIVE, 0);
    }
    if socket.family() == Family::Unix {
        let next = retry_interrupted(|| socket.peek_datagram_len())?;
        if next > buf.len() {
            buf.resize(next, 0);
        }
    }
    let (len, from) = retry_interrupted(|| socket.recvfrom_trunc(buf))?;
    if len > buf.len() {
        tracing::warn!(
            "a datagram of {len} bytes was cut to its first {} bytes (the system kept no more)",
            buf.len()
        );
        return Ok((buf.len(), from));
    }
    Ok((len, from))
}

/// Bridges a connected datagram `socket` with `input` and `output`.
///
/// # Errors
///
/// A failed receive (`connection refused` when nothing listens at the peer's port: the
/// kernel reports the ICMP answer on the next receive), the idle timeout, or a failing
/// output.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use socketkit::client::{BridgeOptions, Input, Output, bridge_datagrams};
/// use socketkit::socket::{Family, Socket, Type};
///
/// let server = Socket::new(Family::Inet, Type::Datagram)?;
/// server.bind(("127.0.0.1", 0))?;
/// let mut client = Socket::new(Family::Inet, Type::Datagram)?;
/// client.connect(server.local_addr()?)?;
/// let echo = std::thread::spawn(move || {
///     let (data, from) = server.recvfrom(512).unwrap();
///     server.sendto(&data, &from).unwrap();
/// });
/// let input = Input::spawn(&b"hello"[..], 512)?;
/// let mut output = Vec::new();
/// let options = BridgeOptions { wait: Duration::from_millis(200), ..Default::default() };
/// bridge_datagrams(&mut client, &input, Output::writer(&mut output), options)?;
/// assert_eq!(output, b"hello");
/// # echo.join().unwrap();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn bridge_datagrams(
    socket: &mut Socket,
    input: &Input,
    output: Output<'_>,
    options: BridgeOptions,
) -> Result<BridgeEnd> {
    let shortest = options
        .idle_timeout
        .map_or(options.wait, |idle| idle.min(options.wait));
    socket.set_timeout(Some(tick(shortest)))?;
    let activity = Activity::new();
    let input_ended = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let socket = &*socket;
    thread::scope(|scope| {
        let sender = (options.direction != Direction::ReceiveOnly)
            .then(|| {
                thread::Builder::new().spawn_scoped(scope, || {
                    send_datagrams(input, socket, &done, &input_ended, &activity)
                })
            })
            .transpose()
            .map_err(super::bridge::thread_error)?;
        let output = match options.direction {
            Direction::SendOnly => Output::writer(io::sink()),
            _ => output,
        };
        let peer = Peer::of(socket, &options);
        let ended = (&input_ended, input);
        let end = receive(socket, &peer, output, &activity, ended, options);
        done.store(true, Ordering::Relaxed);
        // A failed input is the error, whatever the wait for replies that followed it.
        match sender.map(|sender| sender.join()) {
            Some(Ok(Some(failed))) => Err(failed),
            _ => end,
        }
    })
}

/// Runs `receive` again when a signal interrupted it: with a receive timeout set, the
/// kernel does not restart the call (signal(7)), and a signal whose handler only removes a
/// file before the process dies by it must not turn into an `interrupted system call`
/// error (exit 1) first.
fn retry_interrupted<T>(mut receive: impl FnMut() -> Result<T>) -> Result<T> {
    loop {
        match receive() {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            done => return done,
        }
    }
}

fn send_datagrams(
    input: &Input,
    socket: &Socket,
    done: &AtomicBool,
    input_ended: &AtomicBool,
    activity: &Activity,
) -> Option<Error> {
    while !done.load(Ordering::Relaxed) {
        match input.next(POLL) {
            Next::Data(buf) => {
                let mut sent = socket.send(&buf).map(drop);
                if too_long_for_an_ipv4_peer(socket, &buf, &sent) {
                    // An IPv6 socket's IPv4 peer (a dual-stack listener's client, a mapped
                    // address) takes IPv4's datagrams: the read goes in two. The input is a
                    // stream, and a read's length was never the sender's to choose.
                    sent = buf
                        .chunks(MAX_UDP_V4)
                        .try_for_each(|piece| socket.send(piece).map(drop));
                }
                match sent {
                    Ok(()) => {}
                    // An ICMP error for an earlier datagram: the receiving side reports it.
                    Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {}
                    // Anything else loses this datagram: said, never silent.
                    Err(err) => tracing::warn!(
                        "a datagram of {} bytes was not sent: {}",
                        buf.len(),
                        crate::error::describe(&err.into_io_error())
                    ),
                }
                activity.touch();
                input.recycle(buf);
            }
            Next::Pending => {}
            Next::End => {
                activity.touch(); // the wait for replies starts now
                input_ended.store(true, Ordering::Relaxed);
                return None;
            }
            Next::Failed(err) => {
                // No reply is waited for (`Input::failed`): the bridge ends at the receive's
                // next tick.
                input_ended.store(true, Ordering::Relaxed);
                return Some(err);
            }
        }
    }
    None
}

/// Whether `sent`, the send of `buf` on `socket`, failed only because the peer is IPv4
/// behind an IPv6 socket (`EMSGSIZE` for a datagram IPv6 carries and IPv4 does not).
fn too_long_for_an_ipv4_peer(socket: &Socket, buf: &[u8], sent: &Result<()>) -> bool {
    matches!(sent, Err(err) if err.io_error().raw_os_error() == Some(libc::EMSGSIZE))
        && socket.family() == Family::Inet6
        && buf.len() > MAX_UDP_V4
}

fn receive(
    socket: &Socket,
    peer: &Peer,
    output: Output<'_>,
    activity: &Activity,
    (input_ended, input): (&AtomicBool, &Input),
    options: BridgeOptions,
) -> Result<BridgeEnd> {
    let Output {
        writer: mut output,
        watch,
        ..
    } = output;
    let mut buf = Vec::new();
    loop {
        match recv_whole(socket, &mut buf) {
            Ok((n, _)) => {
                activity.touch();
                if let Err(err) = output.write_all(&buf[..n]).and_then(|()| output.flush()) {
                    return output_failed(err);
                }
            }
            Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                // Looked at only when the peer is quiet: while datagrams come, the write
                // tells.
                if watch
                    .as_ref()
                    .is_some_and(|fd| net::reader_gone(fd.as_raw_fd()))
                {
                    return Ok(BridgeEnd::OutputClosed);
                }
                // A failed input waits for no reply: its error is the end.
                let waited = options.direction == Direction::SendOnly
                    || activity.quiet_for() >= options.wait
                    || input.failed();
                if input_ended.load(Ordering::Relaxed) && waited {
                    return finish(&mut output);
                }
                if options.idle_timeout.is_some() {
                    check_idle(peer, activity, options.idle_timeout, err)?;
                }
            }
            Err(err) => return Err(peer.error(Op::Receive, err.into_io_error())),
        }
    }
}
