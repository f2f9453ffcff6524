//! The TLS bridge's waits on the kernel's word about its connection: that the peer holds
//! every byte sent (send-only's delivery), that what the peer sent before the first input
//! was taken in first, and what a refused send means.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::bridge::{ACK_POLL, LINGER, all_acknowledged};
use crate::net::{self, Activity};

/// Send-only: how long the first input waits for the receiving side to take in what the
/// peer had sent before it (see `taken_in_first`).
const TAKE_IN_FIRST: Duration = Duration::from_millis(100);

/// `err` as the reset it is, if a send failed because the peer reset the connection: over
/// TCP `EPIPE` is the reset of a peer whose end came first (see the plain bridge's sender).
pub(super) fn was_reset(err: io::Error) -> Option<io::Error> {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
    .then(|| io::Error::from_raw_os_error(libc::ECONNRESET))
}

/// Returns once the peer's kernel has acknowledged every byte written to `fd`.
/// Once the peer's kernel holds every byte and the peer has been quiet for [`LINGER`]
/// without having `answered` the input: a peer that answers each command is still working
/// through them, and a close then resets the connection at its next answer (see the plain
/// bridge's send-only); it is waited for until it closes.
pub(super) async fn delivered(fd: RawFd, activity: &Activity, answered: impl Fn() -> bool) {
    acknowledged(fd).await;
    loop {
        let left = LINGER.saturating_sub(activity.quiet_for());
        if left.is_zero() && !answered() {
            return;
        }
        let pause = if left.is_zero() {
            ACK_POLL
        } else {
            left.min(ACK_POLL)
        };
        tokio::time::sleep(pause).await;
    }
}

/// Waits (at most `TAKE_IN_FIRST`) until the kernel holds nothing unread on the TCP socket
/// `fd`: what the peer sent before the first input (a greeting) is then counted as heard
/// before it, however late the runtime learnt that the socket was readable (a loaded
/// machine can wake the bridge for its input first). Only plaintext counts, so unlike the
/// plain bridge's the count cannot be the kernel's: a TLS 1.3 server's session tickets
/// would pass for an answer.
pub(super) async fn taken_in_first(fd: RawFd) {
    let started = Instant::now();
    while net::receive_queued(fd).is_ok_and(|queued| queued > 0)
        && started.elapsed() < TAKE_IN_FIRST
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn acknowledged(fd: RawFd) {
    let mut pause = Duration::from_millis(1);
    while !all_acknowledged(fd) {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(ACK_POLL);
    }
}
