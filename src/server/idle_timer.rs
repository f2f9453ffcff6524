//! A connection's idle limit: a deadline re-armed lazily, so that a busy connection never
//! touches the runtime's timer, with one more look before the limit ends a connection
//! whose program was stopped.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The idle deadline, re-armed lazily: progress only records the time, and the sleep is
/// moved to the new deadline when it fires, so a busy connection never touches the timer.
#[derive(Debug)]
pub(super) struct IdleTimer {
    limit: Duration,
    last_progress: Instant,
    sleep: Pin<Box<Sleep>>,
    /// The limit was seen passed once, and the connection is given one more look (see
    /// `poll_expired`).
    looked_again: bool,
}

impl IdleTimer {
    /// A timer that fires `limit` after the last progress, counted from now.
    pub(super) fn new(limit: Duration) -> IdleTimer {
        let now = Instant::now();
        // `limit` is the builder's, kept at most a hundred years: the sums cannot overflow.
        IdleTimer {
            limit,
            last_progress: now,
            sleep: Box::pin(tokio::time::sleep_until(now + limit)),
            looked_again: false,
        }
    }

    /// Called when an operation is pending: `Ready(Err)` once the connection has been idle
    /// for the whole limit.
    ///
    /// The first time the limit is seen passed, the operation gets one more look, after
    /// the runtime has taken in the readiness that came meanwhile: a program stopped for
    /// longer than the limit (^Z, a debugger, a paused VM) wakes with its timers run before
    /// its sockets are looked at, and the client's bytes that came during the stop, unread,
    /// would have ended the connection as idle (an outside audit: 16 of 16 echo connections
    /// cut, the bytes sent during a 1.5 s stop never echoed).
    pub(super) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            let deadline = self.last_progress + self.limit;
            if Instant::now() >= deadline {
                if self.looked_again {
                    return Poll::Ready(crate::net::idle_error(self.limit));
                }
                self.looked_again = true;
                // Woken after the runtime's next look at its sockets, as `yield_now` is.
                let _ = std::pin::pin!(tokio::task::yield_now()).poll(cx);
                return Poll::Pending;
            }
            self.looked_again = false;
            self.sleep.as_mut().reset(deadline);
        }
    }

    /// The limit.
    pub(super) fn limit(&self) -> Duration {
        self.limit
    }

    /// Bytes moved: the deadline is `limit` from now.
    pub(super) fn progressed(&mut self) {
        self.last_progress = Instant::now();
    }
}
