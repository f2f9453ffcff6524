//! The stream bridge over TLS: the same contract as the plain bridge (bytes both ways at
//! once, end of input half-closes, the peer closing ends it), with the TLS meaning of each
//! end: end of input sends close_notify and then the TCP half-close; the peer's close_notify
//! is its end; a peer whose connection ends *without* close_notify has cut the stream short,
//! and that is an error, never a clean end.
//!
//! rustls needs one session for both directions, so the bridge runs on a small tokio runtime
//! of its own on the calling thread (the session split in two halves that share it); input
//! still comes from the [`Input`] thread, handed over a channel of one chunk, and output
//! goes to a writer thread as soon as each read returns, so every byte that arrived is
//! readable at once and a write blocked on a full output does not hold the sending.
//!
//! One way only ([`Direction`]), as the plain bridge: send-only drops what the peer sends
//! and ends once the input has ended, close_notify and the half-close have gone out, and the
//! peer's kernel has acknowledged all of it; receive-only never reads the input and never
//! closes its side before the peer has.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::bridge::{
    Acknowledged, Answers, BridgeEnd, BridgeOptions, ByteCounts, Direction, InputPauses, LINGER,
    Peer, all_acknowledged, end_sending, idle_error, next_to_send, thread_error, waits_for_input,
};
use super::input::{Input, Next};
use super::output::Output;
use super::tls_delivery::{delivered, taken_in_first, was_reset};
use super::tls_output::{OutputHandoff, handoff};
use super::tls_receive::receive;
use super::tls_runtime::{client_handshake, off_runtime, own_runtime};
use crate::endpoint::{Endpoint, Host};
use crate::error::{Error, Op, Result};
use crate::net::{self, Activity, Pipe, Readiness, within};
use crate::socket::Socket;
use crate::tls::{Connector, handshake_failure};

/// How long close_notify may take to go out when the bridge ends because nobody reads the
/// output any more.
const CLOSE_AT_ONCE: Duration = Duration::from_millis(100);

/// How the TLS session of a bridge begins.
#[derive(Debug)]
pub enum Handshake<'a> {
    /// We connected: verify the server as `connector` says, naming `host`. A failure is
    /// `cannot connect to ENDPOINT: REASON`.
    Client {
        /// Verification, client certificate, ALPN, server name.
        connector: &'a Connector,
        /// The host connected to (the server name unless the connector names another).
        host: &'a Host,
        /// The endpoint, as errors name it.
        endpoint: &'a Endpoint,
        /// Bound on the handshake.
        timeout: Option<Duration>,
    },
    /// We accepted: run the server's side with `config`, within `timeout`.
    Server {
        /// The server's configuration.
        config: Arc<rustls::ServerConfig>,
        /// Bound on the handshake.
        timeout: Duration,
    },
}

/// Makes the TLS handshake on a connected TCP `socket`, then bridges the session with
/// `input` and `output` until the peer closes.
///
/// It blocks the calling thread until then, as [`bridge`](super::bridge) does, and runs the
/// session on a small tokio runtime of its own: called from async code (a thread of a tokio
/// runtime, where another runtime cannot be entered), that runtime runs on a thread of its
/// own while the caller's waits. The caller's thread is blocked all the same: on a
/// `current_thread` runtime nothing else of that runtime runs meanwhile (a server it runs
/// cannot answer). From async code, prefer `tokio::task::spawn_blocking`.
///
/// # Errors
///
/// A failed handshake (`cannot connect to tls:HOST:PORT: certificate has expired: …`), a
/// stream the peer ended without close_notify (`… may be truncated`), a reset, the idle
/// timeout, or an output that fails other than by closing.
pub fn bridge_tls(
    socket: Socket,
    handshake: Handshake<'_>,
    input: &Input,
    output: Output<'_>,
    options: BridgeOptions,
) -> Result<BridgeEnd> {
    off_runtime(|| bridge_tls_here(socket, handshake, input, output, options))
}

/// [`bridge_tls`] on the calling thread, which must not be a tokio runtime's.
fn bridge_tls_here(
    socket: Socket,
    handshake: Handshake<'_>,
    input: &Input,
    output: Output<'_>,
    options: BridgeOptions,
) -> Result<BridgeEnd> {
    let peer = Peer::of(&socket, &options);
    // Asked of the kernel while the stream below owns it (send-only: what is acknowledged).
    let fd = socket.fileno();
    let (runtime, tcp) = own_runtime(socket)?;
    let mut output = match options.direction {
        Direction::SendOnly => Output::writer(io::sink()),
        _ => output,
    };
    // The output to watch, and a pipe whose write end, closed, wakes the watcher when the
    // bridge is over.
    let watcher = match output.watch.take() {
        Some(watch) => {
            let wake = Pipe::new(1).map_err(|err| Error::without_target(Op::Io, err))?;
            Some((watch, wake))
        }
        None => None,
    };
    let (gone, output_gone) = oneshot::channel();
    let (output, writer) = handoff(output.into_writer());
    let done = AtomicBool::new(false);
    let keep_on = AtomicBool::new(false);
    let failure = Mutex::new(None);
    let (chunks, receiver) = mpsc::channel(1);
    thread::scope(|scope| {
        let (done, keep_on, failure) = (&done, &keep_on, &failure);
        if options.direction != Direction::ReceiveOnly {
            // A shared input's pump also asks the socket whether its peer has closed.
            let shared = options.shared_input.then_some(fd);
            scope.spawn(move || pump(input, &chunks, (done, keep_on, failure), shared));
        }
        let wake = watcher.map(|(watch, Pipe { read, write, .. })| {
            scope.spawn(move || watch_output(&read, &watch, gone));
            write
        });
        if let Err(err) = thread::Builder::new().spawn_scoped(scope, move || writer.run()) {
            end_sending(done, input);
            return Err(thread_error(err));
        }
        let sending = Sending {
            chunks: receiver,
            input,
            done,
            keep_on,
            failure,
        };
        let result = runtime.block_on(async {
            let tcp = TcpStream::from_std(tcp).map_err(|err| peer.error(Op::Io, err))?;
            match handshake {
                Handshake::Client {
                    connector,
                    host,
                    endpoint,
                    timeout,
                } => {
                    // Through a proxy, the error names it beside the endpoint, as the
                    // bridge's others do.
                    let target: &dyn std::fmt::Display = match &options.peer_name {
                        Some(name) => name,
                        None => endpoint,
                    };
                    let tls = client_handshake(connector, host, target, timeout, tcp).await?;
                    run(tls, fd, sending, output, output_gone, &options, &peer).await
                }
                Handshake::Server { config, timeout } => {
                    let accept = tokio_rustls::TlsAcceptor::from(config).accept(tcp);
                    let tls = within(Some(timeout), async {
                        accept.await.map_err(handshake_failure)
                    })
                    .await
                    .map_err(|err| peer.error(Op::Handshake, err))?;
                    tracing::debug!("tls: {}", crate::tls::summary(tls.get_ref().1));
                    run(tls, fd, sending, output, output_gone, &options, &peer).await
                }
            }
        });
        // The input thread may still wait for input: woken, it stops at once.
        end_sending(done, input);
        drop(wake);
        result
    })
}

/// Waits, on a thread of its own, until the output's reader has gone (then says so over
/// `gone`) or `wake` reports its write end closed (the bridge is over). The plain bridge
/// watches the output in the wait it makes for the socket; here tokio waits for the socket,
/// and tokio has no readiness for "the reader of this pipe left".
fn watch_output(wake: &OwnedFd, watch: &OwnedFd, gone: oneshot::Sender<()>) {
    match net::wait_readable_watching(wake.as_raw_fd(), Some(watch.as_raw_fd()), None) {
        Ok(Readiness::ReaderGone) => {
            let _ = gone.send(());
        }
        Ok(_) => {}
        Err(err) => tracing::debug!("cannot watch the output ({err}); not watched"),
    }
}

/// The input's side of a session: the chunks [`pump`] hands over, and the input that takes
/// their buffers back.
struct Sending<'a> {
    chunks: mpsc::Receiver<Vec<u8>>,
    input: &'a Input,
    /// Tells the pump the bridge is over.
    done: &'a AtomicBool,
    /// Set (before `done`) when the peer ended its side without a word, or the input is
    /// to be sent whole (send-only): the pump then sends the input to its end, however
    /// long it pauses (see the plain bridge's `waits_for_input`).
    keep_on: &'a AtomicBool,
    /// Why the input failed, set by the pump before it stops.
    failure: &'a Mutex<Option<Error>>,
}

/// Hands input chunks to the runtime until the input ends (dropping the sender tells the
/// bridge to close its side) or the bridge is over (see the plain bridge's `send_input`:
/// with a shared input, the socket `shared` names, what comes once it is over or its peer
/// has closed is the next connection's).
fn pump(
    input: &Input,
    chunks: &mpsc::Sender<Vec<u8>>,
    (done, keep_on, failure): (&AtomicBool, &AtomicBool, &Mutex<Option<Error>>),
    shared: Option<RawFd>,
) {
    let mut pauses = InputPauses::begin();
    loop {
        let Some(next) = next_to_send(input, done, shared, &mut pauses) else {
            return;
        };
        match next {
            Next::Data(buf) => {
                pauses.had_input();
                if let Err(unsent) = chunks.blocking_send(buf) {
                    // The bridge is over: the chunk is nobody's yet.
                    input.put_back(unsent.0);
                    return;
                }
            }
            Next::Pending if chunks.is_closed() => return,
            // A shared input's next bytes are the next connection's, paused or not.
            Next::Pending
                if done.load(Ordering::Acquire)
                    && (shared.is_some()
                        || (pauses.paused(input) && !keep_on.load(Ordering::Relaxed))) =>
            {
                return;
            }
            Next::Pending => {}
            Next::End => return,
            Next::Failed(err) => {
                *failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(err);
                return;
            }
        }
    }
}

/// Moves bytes both ways over an established session.
async fn run<S: AsyncRead + AsyncWrite>(
    stream: S,
    fd: RawFd,
    sending: Sending<'_>,
    output: OutputHandoff,
    output_gone: oneshot::Receiver<()>,
    options: &BridgeOptions,
    peer: &Peer,
) -> Result<BridgeEnd> {
    let Sending {
        mut chunks,
        input,
        done,
        keep_on,
        failure,
    } = sending;
    // Done only when the reader has gone; a watcher that stopped (or none) never ends it.
    let mut output_gone = Box::pin(async {
        if output_gone.await.is_err() {
            std::future::pending::<()>().await;
        }
    });
    let activity = Activity::new();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let activity = &activity;
    let sent_bytes = options.counts.as_deref().map(|counts| &counts.sent);
    let direction = options.direction;
    let keep_write_open = options.keep_write_open;
    // What the peer sent, in bytes (see `Sending::keep_on`: whether it sent anything), and
    // whether that answered the input (send-only's delivery).
    let heard = AtomicU64::new(0);
    let answers = Answers::new();
    let (heard_ref, answers) = (&heard, &answers);
    // Whether the sending waits for input (rather than on the peer to take what it
    // writes): only a send blocked on the peer is stuck (see the end below), as the plain
    // bridge's `in_send` tells.
    let awaiting_input = AtomicBool::new(false);
    let awaiting_input = &awaiting_input;
    let mut send = Box::pin(async {
        if direction == Direction::ReceiveOnly {
            // The input is not ours to read, and our side stays open until the peer's ends.
            std::future::pending::<()>().await;
        }
        let mut first = true;
        loop {
            awaiting_input.store(true, Ordering::Relaxed);
            let next = chunks.recv().await;
            awaiting_input.store(false, Ordering::Relaxed);
            let Some(buf) = next else { break };
            if first && direction == Direction::SendOnly {
                taken_in_first(fd).await;
            }
            first = false;
            answers.input_goes(heard_ref.load(Ordering::Relaxed));
            // A piece at a time, each counted as activity when the session takes it: a peer
            // that reads slowly is seen taking bytes, not stuck for a whole chunk (see the
            // plain bridge's `send_whole`).
            let mut rest = &buf[..];
            while !rest.is_empty() {
                match writer.write(rest).await? {
                    0 => return Err(io::ErrorKind::WriteZero.into()),
                    n => rest = &rest[n..],
                }
                activity.touch();
            }
            writer.flush().await?;
            ByteCounts::add(sent_bytes, buf.len());
            input.recycle(buf);
        }
        if input.failed() {
            // Neither close_notify nor a half-close: the peer must not take what it got
            // for the whole.
            return Err(io::Error::other("the input failed"));
        }
        if keep_write_open {
            // Neither close_notify nor a half-close now: they go once the peer has closed.
            return Ok(());
        }
        // End of input: close_notify, then the TCP half-close; the peer may go on sending.
        writer.shutdown().await
    });
    let mut receive = Box::pin(receive(
        &mut reader,
        output,
        activity,
        options,
        peer,
        &heard,
    ));
    let mut sent = false;
    // Send-only, once the input has ended and close_notify is out: what the peer would
    // still send is not wanted, but closing with it unread resets the connection and drops
    // what the peer has not acknowledged yet. So reading goes on until it has.
    let mut delivering = false;
    // A send the peer refused with a reset (after its own end, so that the receiving side
    // saw a clean one): input lost, which ends the run as an error whatever the receiving
    // side says.
    let mut refused = None;
    // Input the peer stopped taking after its end: the run was cut (see below).
    let mut cut = false;
    // The idle limit passed while input was still owed after the peer's end (see below).
    let mut idled = false;
    // As the plain bridge's rule: input refused after the peer's end was owed when the peer
    // said nothing (a receiver) or the input is to go whole (send-only).
    let lost = |err: io::Error| {
        let owed = direction == Direction::SendOnly || heard.load(Ordering::Relaxed) == 0;
        owed.then(|| was_reset(err)).flatten()
    };
    let end = loop {
        tokio::select! {
            end = &mut receive => {
                // However the peer ended (a reset, no close_notify), it holds all of ours.
                if delivering && all_acknowledged(fd) {
                    break Ok(BridgeEnd::PeerClosed);
                }
                break end;
            }
            () = delivered(fd, activity, || answers.answered(heard_ref.load(Ordering::Relaxed))), if delivering => {
                break Ok(BridgeEnd::PeerClosed);
            }
            // Nobody reads the output any more: ended as a write to it would have ended.
            () = &mut output_gone => break Ok(BridgeEnd::OutputClosed),
            result = &mut send, if !sent => {
                sent = true;
                match result {
                    Ok(()) if direction == Direction::SendOnly => delivering = true,
                    Ok(()) => {}
                    Err(err) if input.failed() => {
                        let failed = failure.lock().unwrap_or_else(PoisonError::into_inner).take();
                        break Err(failed.unwrap_or_else(|| peer.error(Op::Io, err)));
                    }
                    // The receiving side reports what happened to the connection.
                    Err(err) => {
                        tracing::debug!("sending stopped: {}", crate::error::describe(&err));
                        refused = refused.or_else(|| lost(err));
                    }
                }
            }
        }
    };
    if input.failed() {
        // Closed without close_notify, which a TLS peer reads as a truncation; the failure
        // is the end, however the receiving side ended first.
        let failed = failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        return failed.map_or(end, Err);
    }
    if direction == Direction::ReceiveOnly || (keep_write_open && sent) {
        drop(send);
        // The peer has closed: answer its close_notify with ours.
        let _ = tokio::time::timeout(LINGER, writer.shutdown()).await;
    } else if !sent && matches!(end, Ok(BridgeEnd::OutputClosed)) {
        // Nobody reads the output any more: what is left to send is not wanted, and a send
        // blocked on a peer that stopped reading must not hold the end back. close_notify
        // still goes, if the peer's side takes it at once.
        drop(send);
        let _ = tokio::time::timeout(CLOSE_AT_ONCE, writer.shutdown()).await;
    } else if !sent && matches!(end, Ok(BridgeEnd::PeerClosed)) {
        // Input already read goes out first (a peer that half-closed may still read it),
        // and input that keeps coming, as in the plain bridge (`InputPauses`). The
        // pump stops at a pause (an open, quiet stdin), which ends the sending here rather
        // than after the whole linger; a send that makes no progress for the linger is
        // given up — unless the peer ended its side without a word (a receiver, such as
        // `listen tls:… </dev/null > file`) or the input is to go whole (send-only): then
        // all of it is sent, however long it pauses or the peer is slow to read (within
        // the idle limit), by the plain bridge's rule (`waits_for_input`).
        let silent = heard.load(Ordering::Relaxed) == 0;
        let keep = waits_for_input((fd, true), silent, false, direction);
        keep_on.store(keep, Ordering::Relaxed);
        end_sending(done, input);
        // The idle limit holds the sending of a peer that reads on; one that answered and
        // closed is done, and the input's pause ends the run as it would without a limit
        // (a limit shorter than the pause made it `no data either way`, exit 1).
        let idle_left = || {
            (options.idle_timeout)
                .filter(|_| keep)
                .map(|idle| idle.saturating_sub(activity.quiet_for()))
        };
        // What the peer took while the sending did not see it (see `Acknowledged`).
        let mut acknowledged = Acknowledged::new(fd);
        loop {
            let wait = idle_left().map_or(LINGER, |left| left.min(LINGER));
            let asked = Instant::now();
            match tokio::time::timeout(wait, &mut send).await {
                Ok(result) => {
                    refused = refused.or_else(|| result.err().and_then(lost));
                    break;
                }
                // The idle limit holds whatever the sending waits for, as in the plain
                // bridge: nothing moved either way for that long.
                Err(_) if idle_left().is_some_and(|left| left.is_zero()) => {
                    idled = true;
                    break;
                }
                // Waiting for input, the pump ends it at the input's pause: the peer
                // took all it was given. (The pump's pause counts from when it read the
                // input, this wait from the peer's end; a pump thread woken late must not
                // look like a peer that stopped reading.)
                Err(_)
                    if keep
                        || awaiting_input.load(Ordering::Relaxed)
                        || activity.quiet_for() < LINGER
                        || acknowledged.excuses(asked, wait) => {}
                Err(_) => {
                    // The peer stopped taking the input: cut, and said so (see the plain
                    // bridge), not ended with a close_notify the peer takes for the end.
                    cut = true;
                    break;
                }
            }
        }
        drop(send);
        if cut {
            // SAFETY: `fd` is the session's socket, which the session's halves (`writer`
            // among them, still here) keep open.
            net::reset_now(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) });
        } else if !idled {
            let _ = tokio::time::timeout(LINGER, writer.shutdown()).await;
        }
        // Idle: no close_notify, so that the peer does not take the input it has for all
        // of it (the close without one is a truncation to a TLS peer).
    }
    match refused {
        Some(reset) if end.is_ok() => Err(peer.error(Op::Send, reset)),
        _ if cut && end.is_ok() => Err(peer.error(Op::Send, super::bridge::not_taken(LINGER))),
        _ if idled && end.is_ok() => Err(idle_error(
            peer,
            Op::Send,
            options.idle_timeout.unwrap_or_default(),
        )),
        _ => end,
    }
}
