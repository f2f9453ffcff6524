//! The datagram bridge (UDP, Unix datagram): each input read is one datagram to the peer,
//! each datagram from the peer is written out; after the input ends, replies are awaited
//! until none has come for the `wait` duration.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use super::MAX_DATAGRAM;
use super::bridge::{
    BridgeEnd, BridgeOptions, Direction, Output, POLL, Peer, check_idle, finish, output_failed,
    tick,
};
use super::input::{Input, Next};
use crate::error::{Op, Result};
use crate::net::Activity;
use crate::socket::Socket;

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
        if options.direction != Direction::ReceiveOnly {
            scope.spawn(|| send_datagrams(input, socket, &done, &input_ended, &activity));
        }
        let output = match options.direction {
            Direction::SendOnly => Output::writer(io::sink()),
            _ => output,
        };
        let peer = Peer(options.peer.clone().or_else(|| socket.peer_addr().ok()));
        let end = receive(
            socket,
            &peer,
            output.into_writer(),
            &activity,
            &input_ended,
            options,
        );
        done.store(true, Ordering::Relaxed);
        end
    })
}

fn send_datagrams(
    input: &Input,
    socket: &Socket,
    done: &AtomicBool,
    input_ended: &AtomicBool,
    activity: &Activity,
) {
    while !done.load(Ordering::Relaxed) {
        match input.next(POLL) {
            Next::Data(buf) => {
                // A refused send is reported again by the receiving side.
                let _ = socket.send(&buf);
                activity.touch();
                input.recycle(buf);
            }
            Next::Pending => {}
            Next::End => {
                activity.touch(); // the wait for replies starts now
                input_ended.store(true, Ordering::Relaxed);
                return;
            }
        }
    }
}

fn receive(
    socket: &Socket,
    peer: &Peer,
    mut output: Box<dyn Write + '_>,
    activity: &Activity,
    input_ended: &AtomicBool,
    options: BridgeOptions,
) -> Result<BridgeEnd> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match socket.recv_into(&mut buf) {
            Ok(n) => {
                activity.touch();
                if let Err(err) = output.write_all(&buf[..n]).and_then(|()| output.flush()) {
                    return output_failed(err);
                }
            }
            Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                let waited = options.direction == Direction::SendOnly
                    || activity.quiet_for() >= options.wait;
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
