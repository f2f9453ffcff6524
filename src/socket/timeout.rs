//! How long a blocking call waits: forever, up to a timeout, or not at all (Python's
//! `settimeout`, `gettimeout` and `setblocking`), and the error a call that ran out gives.

use std::io;
use std::time::Duration;

use super::{Shared, Socket};
use crate::error::{Error, Op, Result};

impl Socket {
    /// Sets a timeout for blocking calls (Python: `s.settimeout(t)`): `None` waits forever.
    ///
    /// It applies to `connect`, `accept`, `send*` and `recv*`; a call that waits longer
    /// fails with [`io::ErrorKind::TimedOut`]. As in Python, it puts a socket in
    /// non-blocking mode back in blocking mode: `set_timeout(None)` is
    /// [`Socket::set_blocking`]`(true)`.
    ///
    /// The timeout is the kernel's (`SO_RCVTIMEO` and `SO_SNDTIMEO`), kept with the socket
    /// rather than with this handle: every handle from [`Socket::try_clone`] sees it, and
    /// setting it on one sets it for all, which is why `&self` is enough. The kernel counts
    /// it in microseconds, and waits in clock ticks (see [`Socket::timeout`]): a timeout
    /// under 1 µs is rounded up to 1 µs (as `std` does), rather than truncated to the zero
    /// that means "wait forever".
    ///
    /// # Errors
    ///
    /// A zero duration is refused (`InvalidInput`): use [`Socket::set_blocking`]`(false)`
    /// for non-blocking mode.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let (a, _b) = socketkit::socket::socketpair()?;
    /// a.set_timeout(Some(Duration::from_millis(20)))?;
    /// assert_eq!(a.recv(16).unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    #[doc(alias = "settimeout")]
    pub fn set_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        let timeout = match timeout {
            Some(zero) if zero.is_zero() => {
                let err = io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a zero timeout is refused (set_blocking(false) makes calls that never wait)",
                );
                // The input is wrong, not the socket: its address would only distract.
                return Err(Error::without_target(Op::SetOption("a timeout"), err));
            }
            // socket2 truncates to whole microseconds, and a zero timeval means no timeout.
            Some(short) => Some(short.max(Duration::from_micros(1))),
            None => None,
        };
        self.set_kernel_timeout(timeout)?;
        self.set_nonblocking(false)
    }

    /// Sets `SO_RCVTIMEO` and `SO_SNDTIMEO`, which the kernel reads `None` as "forever".
    pub(super) fn set_kernel_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        let set = |name, result: io::Result<()>| {
            result.map_err(|err| self.error_at_local(Op::SetOption(name), err))
        };
        set("SO_RCVTIMEO", self.inner.set_read_timeout(timeout))?;
        set("SO_SNDTIMEO", self.inner.set_write_timeout(timeout))?;
        Shared::set(&self.shared.timeout, timeout);
        Ok(())
    }

    /// Sets `SO_SNDTIMEO` alone, for a sender of our own that wants a blocking `send(2)` to
    /// come back now and then with what it took so far (the kernel returns the bytes queued
    /// when the timeout ends a send that took some); [`Socket::timeout`] still says what the
    /// caller set, which is what [`Socket::restore_send_timeout`] puts back.
    pub(crate) fn set_send_wait(&self, wait: Duration) -> Result<()> {
        self.inner
            .set_write_timeout(Some(wait.max(Duration::from_micros(1))))
            .map_err(|err| self.error_at_local(Op::SetOption("SO_SNDTIMEO"), err))
    }

    /// Puts `SO_SNDTIMEO` back to the timeout the caller set (see [`Socket::set_send_wait`]).
    pub(crate) fn restore_send_timeout(&self) -> Result<()> {
        self.inner
            .set_write_timeout(self.timeout())
            .map_err(|err| self.error_at_local(Op::SetOption("SO_SNDTIMEO"), err))
    }

    /// The timeout of blocking calls as set (Python: `s.gettimeout()`), shared by every
    /// handle on the socket. (The kernel waits in whole clock ticks: on a 250 Hz kernel a
    /// 50 ms timeout waits 52 ms.) `None` in blocking mode means calls wait forever; in
    /// non-blocking mode, where calls do not wait, it is `None` too (Python says `0.0`):
    /// [`Socket::blocking`] tells them apart.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = socketkit::socket::socketpair()?;
    /// assert_eq!(a.timeout(), None);
    /// a.set_timeout(Some(std::time::Duration::from_secs(1)))?;
    /// assert_eq!(a.timeout(), Some(std::time::Duration::from_secs(1)));
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    #[doc(alias = "gettimeout")]
    pub fn timeout(&self) -> Option<Duration> {
        Shared::get(&self.shared.timeout)
    }

    /// Whether the socket is in blocking mode: no `O_NONBLOCK`, read with `fcntl(2)`
    /// (Python: `s.getblocking()`). A blocking socket may have a timeout; a non-blocking one
    /// never has one, its calls do not wait.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = socketkit::socket::socketpair()?;
    /// assert!(a.blocking()?);
    /// a.set_blocking(false)?;
    /// assert!(!a.blocking()?);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    #[doc(alias = "getblocking")]
    pub fn blocking(&self) -> Result<bool> {
        self.inner
            .nonblocking()
            .map(|nonblocking| !nonblocking)
            .map_err(|err| self.error_at_local(Op::GetOption("O_NONBLOCK"), err))
    }

    /// Switches between blocking and non-blocking mode with `O_NONBLOCK` (Python:
    /// `s.setblocking(flag)`), and removes any timeout: as in Python, `set_blocking(true)`
    /// is `set_timeout(None)` (calls wait forever), and `set_blocking(false)` is Python's
    /// `settimeout(0.0)` (calls do not wait; a call that would fails with
    /// [`io::ErrorKind::WouldBlock`]). [`Socket::set_timeout`] puts a non-blocking socket
    /// back in blocking mode.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let (a, _b) = socketkit::socket::socketpair()?;
    /// a.set_timeout(Some(Duration::from_secs(5)))?;
    /// a.set_blocking(false)?;
    /// assert_eq!(a.timeout(), None);
    /// assert_eq!(a.recv(16).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    #[doc(alias = "setblocking")]
    pub fn set_blocking(&self, blocking: bool) -> Result<()> {
        self.set_kernel_timeout(None)?;
        self.set_nonblocking(!blocking)
    }

    fn set_nonblocking(&self, nonblocking: bool) -> Result<()> {
        self.inner
            .set_nonblocking(nonblocking)
            .map_err(|err| self.error_at_local(Op::SetOption("O_NONBLOCK"), err))
    }

    /// Python raises `socket.timeout` when a call with a timeout runs out; the kernel says
    /// `EAGAIN`, as it does for a call that would wait in non-blocking mode, where
    /// `WouldBlock` is the truth. A socket in blocking mode only says it when its timeout
    /// ran out, so the mode (`fcntl(2)`, asked only on this failure path) tells the two
    /// apart.
    pub(super) fn timed_out(&self, err: io::Error) -> io::Error {
        if err.kind() == io::ErrorKind::WouldBlock && self.inner.nonblocking().is_ok_and(|on| !on) {
            io::Error::new(io::ErrorKind::TimedOut, "timed out")
        } else {
            err
        }
    }
}

/// The longest limit kept: a hundred years, which the clock can count from now (and add
/// to a moment of a connection's life) where `Duration::MAX` — which a caller may pass for
/// "no practical limit" — overflows it.
pub(crate) const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 86_400);

/// When a wait of `within` from now ends: a limit too far to count ends in [`FAR_FUTURE`]
/// rather than overflowing the clock.
pub(crate) fn deadline_in(within: Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(within.min(FAR_FUTURE)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use std::thread;
    use std::time::Instant;

    use super::*;
    use crate::socket::socketpair;

    #[test]
    fn a_zero_timeout_is_refused_in_words() -> Result<()> {
        let (a, _b) = socketpair()?;
        let err = a.set_timeout(Some(Duration::ZERO)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            err.to_string(),
            "cannot set a timeout: a zero timeout is refused \
             (set_blocking(false) makes calls that never wait)"
        );
        assert_eq!(a.timeout(), None, "the refused timeout is not kept");
        Ok(())
    }

    #[test]
    fn a_timeout_under_a_microsecond_still_times_out() -> Result<()> {
        let (a, b) = socketpair()?;
        a.set_timeout(Some(Duration::from_nanos(500)))?;
        // Should the timeout read as "forever", this byte ends the wait and the test fails.
        let late = thread::spawn(move || {
            thread::sleep(Duration::from_secs(1));
            b.send(b"late")
        });
        let started = Instant::now();
        let err = a
            .recv(16)
            .expect_err("nothing arrives within a microsecond");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_millis(500));
        late.join().expect("the sender ends")?;
        Ok(())
    }

    #[test]
    fn every_handle_sees_the_timeout_set_through_another() -> Result<()> {
        let (a, _b) = socketpair()?;
        let a2 = a.try_clone()?;
        a.set_timeout(Some(Duration::from_secs(1)))?;
        assert_eq!(a2.timeout(), Some(Duration::from_secs(1)));
        a2.set_timeout(Some(Duration::from_millis(50)))?;
        // As set, not as the kernel's clock ticks would read it back (52 ms at 250 Hz).
        assert_eq!(a.timeout(), Some(Duration::from_millis(50)));
        let err = a.recv(1).expect_err("nothing arrives");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().ends_with(": timed out"), "{err}");
        Ok(())
    }

    #[test]
    fn set_blocking_removes_the_timeout_either_way() -> Result<()> {
        let (a, b) = socketpair()?;
        a.set_timeout(Some(Duration::from_millis(100)))?;
        a.set_blocking(false)?;
        assert_eq!(a.timeout(), None);
        let err = a.recv(1).expect_err("nothing arrived");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");

        a.set_timeout(Some(Duration::from_millis(100)))?;
        a.set_blocking(true)?;
        assert_eq!(a.timeout(), None);
        // With the timeout left in place the receive fails before this byte arrives.
        let late = thread::spawn(move || {
            thread::sleep(Duration::from_millis(400));
            b.send(b"x")
        });
        assert_eq!(a.recv(1)?, b"x");
        late.join().expect("the sender ends")?;
        Ok(())
    }

    #[test]
    fn set_timeout_puts_a_non_blocking_socket_back_in_blocking_mode() -> Result<()> {
        let (a, _b) = socketpair()?;
        a.set_blocking(false)?;
        a.set_timeout(Some(Duration::from_millis(40)))?;
        assert!(a.blocking()?);
        let started = Instant::now();
        let err = a.recv(1).expect_err("nothing arrives");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(started.elapsed() >= Duration::from_millis(30));
        a.set_blocking(false)?;
        a.set_timeout(None)?;
        assert!(
            a.blocking()?,
            "set_timeout(None) is blocking mode, with no timeout"
        );
        Ok(())
    }
}
