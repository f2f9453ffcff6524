//! The TLS bridge's receiving side: the session's plaintext to the output as it comes,
//! with the TLS meaning of each end, within the idle limit.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::bridge::{BridgeEnd, BridgeOptions, ByteCounts, Peer, check_idle, output_failed, tick};
use super::tls_output::OutputHandoff;
use crate::error::{Op, Result};
use crate::net::Activity;
use crate::tls::{TRUNCATED, in_words};

/// How long the receive's second look at an idle limit that passed waits (see `receive`).
const LOOK_AGAIN: Duration = Duration::from_millis(10);

/// The receiving side of a session: what the peer sends, handed to the output's writer as
/// each read returns, until its close_notify (a clean end), an end without one (a truncation, an
/// error) or the idle limit.
pub(super) async fn receive<R: AsyncRead + Unpin>(
    reader: &mut R,
    mut output: OutputHandoff,
    activity: &Activity,
    options: &BridgeOptions,
    peer: &Peer,
    heard: &AtomicU64,
) -> Result<BridgeEnd> {
    let mut buf = output.buffer();
    // The idle limit was seen passed once: one more look, after the runtime has taken in
    // what came meanwhile (see the server's idle timer: a stopped program's timers run
    // before its sockets are looked at).
    let mut looked_again = false;
    // How a read that took what was there at once ended, for the next read to return.
    let mut held = None;
    loop {
        let read = match (held.take(), options.idle_timeout) {
            (Some(read), _) => read,
            (None, Some(limit)) => {
                // The second look is short: whatever came is readable at once by then.
                let wait = if looked_again {
                    LOOK_AGAIN
                } else {
                    tick(limit)
                };
                match tokio::time::timeout(wait, read_watching(reader, &mut buf, &mut output)).await
                {
                    Ok(Ok(read)) => read,
                    Ok(Err(failed)) => return output_failed(failed),
                    Err(_) if !looked_again && activity.quiet_for() >= limit => {
                        looked_again = true;
                        tokio::task::yield_now().await;
                        continue;
                    }
                    Err(_) => {
                        let timeout = peer.error(Op::Receive, io::ErrorKind::TimedOut.into());
                        check_idle(peer, activity, Some(limit), timeout)?;
                        looked_again = false;
                        continue;
                    }
                }
            }
            (None, None) => match read_watching(reader, &mut buf, &mut output).await {
                Ok(read) => read,
                Err(failed) => return output_failed(failed),
            },
        };
        match read {
            Ok(0) => {
                return match output.finish().await {
                    Ok(()) => Ok(BridgeEnd::PeerClosed),
                    Err(err) => output_failed(err),
                };
            }
            Ok(first) => {
                let (n, end) = take_what_is_there(reader, &mut buf, first).await;
                held = end;
                activity.touch();
                looked_again = false;
                heard.fetch_add(n as u64, Ordering::Relaxed);
                ByteCounts::add(options.counts.as_deref().map(|c| &c.received), n);
                let next = output.buffer();
                if let Err(err) = output.write(std::mem::replace(&mut buf, next), n).await {
                    return output_failed(err);
                }
            }
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                let truncated = io::Error::new(io::ErrorKind::UnexpectedEof, TRUNCATED);
                return Err(peer.error(Op::Receive, truncated));
            }
            Err(err) => return Err(peer.error(Op::Receive, in_words(err))),
        }
    }
}

/// A read of the session into `buf`; or, if the output's writer fails first, its error.
async fn read_watching<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
    output: &mut OutputHandoff,
) -> io::Result<io::Result<usize>> {
    tokio::select! {
        read = reader.read(buf) => Ok(read),
        failed = output.failed() => Err(failed),
    }
}

/// Adds to the `filled` bytes of `buf` what the session has at once (records already
/// decrypted or readable from the socket), without waiting: each chunk handed to the
/// output's writer wakes its thread, so the fewer the better. Returns how many bytes `buf`
/// holds, and how a read on the way ended (the peer's end or an error), for the next read.
async fn take_what_is_there<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
    filled: usize,
) -> (usize, Option<io::Result<usize>>) {
    let mut filled = filled;
    let end = std::future::poll_fn(|cx| {
        while filled < buf.len() {
            let mut more = ReadBuf::new(&mut buf[filled..]);
            match Pin::new(&mut *reader).poll_read(cx, &mut more) {
                Poll::Ready(Ok(())) if more.filled().is_empty() => return Poll::Ready(Some(Ok(0))),
                Poll::Ready(Ok(())) => filled += more.filled().len(),
                Poll::Ready(Err(err)) => return Poll::Ready(Some(Err(err))),
                // Nothing more now: what there is goes (the wake this asked for is spurious
                // to the read after it, which asks again).
                Poll::Pending => break,
            }
        }
        Poll::Ready(None)
    })
    .await;
    (filled, end)
}
