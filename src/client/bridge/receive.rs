//! The receiving half of the stream bridge: socket to output, spliced when the output is a
//! pipe, watching for the output's reader leaving while it waits for the peer.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use super::{BridgeEnd, ByteCounts, Peer, check_idle, finish, output_failed, tick};
use crate::client::input::CHUNK;
use crate::client::output::Output;
use crate::error::{Op, Result};
use crate::net::{self, Activity, Readiness};
use crate::socket::Socket;

/// Copies (or splices) what the socket receives to `output` until the peer closes, the
/// output's reader leaves, or the connection has been idle for `idle`.
pub(super) fn receive(
    socket: &Socket,
    peer: &Peer,
    output: Output<'_>,
    activity: &Activity,
    idle: Option<Duration>,
    received: Option<&AtomicU64>,
) -> Result<BridgeEnd> {
    let Output {
        writer: mut output,
        pipe,
        watch,
    } = output;
    let watch = watch.as_ref().map(AsRawFd::as_raw_fd);
    let waiting = Waiting {
        socket,
        peer,
        watch,
        activity,
        idle,
    };
    if let Some(pipe) = pipe {
        match receive_spliced(&waiting, pipe, received) {
            Spliced::Done(end) => return end,
            Spliced::Unsupported => tracing::debug!("splice to stdout unsupported; copying"),
        }
    }
    let mut buf = vec![0u8; CHUNK];
    loop {
        // Not waiting in the receive: the wait below watches the output too, and costs a
        // call only when there is nothing to take.
        match net::recv_nowait(socket.fileno(), &mut buf) {
            Ok(0) => return finish(&mut output),
            Ok(n) => {
                activity.touch();
                ByteCounts::add(received, n);
                if let Err(err) = output.write_all(&buf[..n]) {
                    return output_failed(err);
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if !waiting.for_the_peer()? {
                    return Ok(BridgeEnd::OutputClosed);
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(peer.error(Op::Receive, err)),
        }
    }
}

/// What a receive waits on: the socket, and the output's reader leaving.
struct Waiting<'a> {
    socket: &'a Socket,
    peer: &'a Peer,
    /// The output, when it is a pipe or socket that tells when its reader has gone.
    watch: Option<RawFd>,
    activity: &'a Activity,
    idle: Option<Duration>,
}

impl Waiting<'_> {
    /// Waits until the socket has something to read (true) or the output's reader has gone
    /// (false), keeping the idle limit.
    fn for_the_peer(&self) -> Result<bool> {
        let wait = self.idle.map(tick);
        let mut looked_again = false;
        loop {
            let started = Instant::now();
            match net::wait_readable_watching(self.socket.fileno(), self.watch, wait) {
                Ok(Readiness::Readable) => return Ok(true),
                Ok(Readiness::ReaderGone) => return Ok(false),
                // Ended late: the program was stopped (^Z, a paused VM), and the input that
                // came meanwhile is the sending side's to send. The limit is judged a tick
                // later, once it has had the time to (judged now, the run ended `no data
                // either way` with that input unsent); once, so that a program starved
                // wait after wait still keeps its limit.
                Ok(Readiness::TimedOut)
                    if !looked_again
                        && wait.is_some_and(|wait| started.elapsed() > wait + net::OVERSLEPT) =>
                {
                    looked_again = true;
                }
                Ok(Readiness::TimedOut) => {
                    looked_again = false;
                    let timeout = self.peer.error(Op::Receive, io::ErrorKind::TimedOut.into());
                    check_idle(self.peer, self.activity, self.idle, timeout)?;
                }
                Err(err) => return Err(self.peer.error(Op::Receive, err)),
            }
        }
    }
}

/// How a spliced receive ended: done, or refused by the kernel before any byte moved.
enum Spliced {
    Done(Result<BridgeEnd>),
    Unsupported,
}

/// Receives straight into the output pipe with `splice(2)`.
fn receive_spliced(waiting: &Waiting<'_>, pipe: RawFd, received: Option<&AtomicU64>) -> Spliced {
    let mut moved_any = false;
    loop {
        // Never splice before the socket has bytes: a splice waiting for the socket would
        // hold the output pipe, and its reader could not take what is already there.
        match waiting.for_the_peer() {
            Ok(true) => {}
            Ok(false) => return Spliced::Done(Ok(BridgeEnd::OutputClosed)),
            Err(err) => return Spliced::Done(Err(err)),
        }
        match net::splice(waiting.socket.fileno(), pipe, CHUNK, false) {
            Ok(0) => return Spliced::Done(Ok(BridgeEnd::PeerClosed)),
            Ok(n) => {
                moved_any = true;
                waiting.activity.touch();
                ByteCounts::add(received, n);
            }
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {
                return Spliced::Done(Ok(BridgeEnd::OutputClosed));
            }
            Err(err) if !moved_any && net::splice_unsupported(&err) => return Spliced::Unsupported,
            // Readable, yet nothing to take after all: wait again (the wait keeps the idle
            // limit).
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) => {}
            Err(err) => return Spliced::Done(Err(waiting.peer.error(Op::Receive, err))),
        }
    }
}
