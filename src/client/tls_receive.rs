//! The TLS bridge's receiving side: the session's plaintext to the output as it comes,
//! with the TLS meaning of each end, within the idle limit.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::bridge::{
    BridgeEnd, BridgeOptions, ByteCounts, Peer, check_idle, finish, output_failed, tick,
};
use super::output::Output;
use crate::error::{Op, Result};
use crate::net::Activity;
use crate::tls::{TRUNCATED, in_words};

/// The most one read takes from the session: a TLS record holds at most 16 KiB of data.
const READ_SIZE: usize = 64 * 1024;

/// How long the receive's second look at an idle limit that passed waits (see `receive`).
const LOOK_AGAIN: Duration = Duration::from_millis(10);

/// The receiving side of a session: what the peer sends, to the output as each read
/// returns, until its close_notify (a clean end), an end without one (a truncation, an
/// error) or the idle limit.
pub(super) async fn receive<R: AsyncRead + Unpin>(
    reader: &mut R,
    output: Output<'_>,
    activity: &Activity,
    options: &BridgeOptions,
    peer: &Peer,
    heard: &AtomicU64,
) -> Result<BridgeEnd> {
    let mut output = output.into_writer();
    let mut buf = vec![0u8; READ_SIZE];
    // The idle limit was seen passed once: one more look, after the runtime has taken in
    // what came meanwhile (see the server's idle timer: a stopped program's timers run
    // before its sockets are looked at).
    let mut looked_again = false;
    loop {
        let read = match options.idle_timeout {
            Some(limit) => {
                // The second look is short: whatever came is readable at once by then.
                let wait = if looked_again {
                    LOOK_AGAIN
                } else {
                    tick(limit)
                };
                match tokio::time::timeout(wait, reader.read(&mut buf)).await {
                    Ok(read) => read,
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
            None => reader.read(&mut buf).await,
        };
        match read {
            Ok(0) => return finish(&mut output),
            Ok(n) => {
                activity.touch();
                looked_again = false;
                heard.fetch_add(n as u64, Ordering::Relaxed);
                ByteCounts::add(options.counts.as_deref().map(|c| &c.received), n);
                if let Err(err) = output.write_all(&buf[..n]) {
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
