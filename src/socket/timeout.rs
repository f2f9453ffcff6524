//! How long a blocking call waits: forever, up to a timeout, or not at all (Python's
//! `settimeout`, `gettimeout` and `setblocking`), and the error a call that ran out gives.

use std::io;
use std::time::Duration;

use super::Socket;
use crate::error::{Op, Result};

impl Socket {
    /// Sets a timeout for blocking calls (Python: `s.settimeout(t)`): `None` waits forever.
    ///
    /// It applies to `connect`, `accept`, `send*` and `recv*`; a call that waits longer
    /// fails with [`io::ErrorKind::TimedOut`].
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
    /// let (mut a, _b) = socketkit::socket::socketpair()?;
    /// a.set_timeout(Some(Duration::from_millis(20)))?;
    /// assert_eq!(a.recv(16).unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    #[doc(alias = "settimeout")]
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        let set = |name, result: io::Result<()>| {
            result.map_err(|err| self.error_at_local(Op::SetOption(name), err))
        };
        set("SO_RCVTIMEO", self.inner.set_read_timeout(timeout))?;
        set("SO_SNDTIMEO", self.inner.set_write_timeout(timeout))?;
        self.timeout = timeout;
        Ok(())
    }

    /// The timeout set by [`Socket::set_timeout`] (Python: `s.gettimeout()`).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut a, _b) = socketkit::socket::socketpair()?;
    /// assert_eq!(a.timeout(), None);
    /// a.set_timeout(Some(std::time::Duration::from_secs(1)))?;
    /// assert_eq!(a.timeout(), Some(std::time::Duration::from_secs(1)));
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    #[doc(alias = "gettimeout")]
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Switches between blocking and non-blocking mode with `O_NONBLOCK` (Python:
    /// `s.setblocking(flag)`). In non-blocking mode a call that would wait fails with
    /// [`io::ErrorKind::WouldBlock`].
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = socketkit::socket::socketpair()?;
    /// a.set_blocking(false)?;
    /// assert_eq!(a.recv(16).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    #[doc(alias = "setblocking")]
    pub fn set_blocking(&self, blocking: bool) -> Result<()> {
        self.inner
            .set_nonblocking(!blocking)
            .map_err(|err| self.error_at_local(Op::SetOption("O_NONBLOCK"), err))
    }

    /// Python raises `socket.timeout` when a call with a timeout runs out; the kernel says
    /// `EAGAIN`. Only a socket with a timeout set gets the translation: in non-blocking mode
    /// `WouldBlock` is the truth.
    pub(super) fn timed_out(&self, err: io::Error) -> io::Error {
        if self.timeout.is_some() && err.kind() == io::ErrorKind::WouldBlock {
            io::Error::new(io::ErrorKind::TimedOut, "timed out")
        } else {
            err
        }
    }
}
