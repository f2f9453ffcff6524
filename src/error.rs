//! The library's error type: what was attempted, on which address, and what the OS said.
//!
//! Every failure that reaches a user reads as one lower-case sentence, for example
//! `cannot bind 0.0.0.0:80: permission denied`, never a bare `os error 13`. The type
//! converts into [`std::io::Error`] so that callers who live on `io::Result` keep the context.

use std::fmt;
use std::io;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The operation that failed, as the first half of an error sentence.
///
/// # Examples
///
/// ```
/// use socketkit::error::Op;
/// assert_eq!(Op::Bind.to_string(), "cannot bind");
/// assert_eq!(Op::SetOption("TCP_NODELAY").to_string(), "cannot set TCP_NODELAY");
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `socket(2)`: creating a socket.
    Create,
    /// `bind(2)`.
    Bind,
    /// `listen(2)`, or the whole of setting up a listener (socket, bind, listen).
    Listen,
    /// `accept(2)`.
    Accept,
    /// `connect(2)`, or the whole of opening a connection.
    Connect,
    /// `send(2)` / `sendto(2)`.
    Send,
    /// `recv(2)` / `recvfrom(2)`.
    Receive,
    /// `shutdown(2)`.
    Shutdown,
    /// `setsockopt(2)` with the named option.
    SetOption(&'static str),
    /// `getsockopt(2)` with the named option.
    GetOption(&'static str),
    /// `getsockname(2)`.
    LocalAddress,
    /// `getpeername(2)`.
    PeerAddress,
    /// `getaddrinfo(3)`: turning a host name into addresses.
    Resolve,
    /// `gethostname(2)`.
    HostName,
    /// Reading or writing a stream that is not a socket (stdin, stdout, a file).
    Io,
    /// Starting a program (the `exec` service).
    Spawn,
    /// Reading configuration from a file: `Load("TLS certificate")` reads "cannot load TLS
    /// certificate FILE".
    Load(&'static str),
    /// Making something that is not read from anywhere (a self-signed certificate).
    Generate(&'static str),
    /// A TLS handshake with a peer that connected to us.
    Handshake,
    /// Setting up what serves a bound listener (an io_uring worker's ring or thread).
    Serve,
}

impl Op {
    /// The verb of the error sentence and the preposition that leads to the target:
    /// `("cannot connect", "to")` reads "cannot connect to 127.0.0.1:9".
    fn phrase(self) -> (&'static str, &'static str) {
        match self {
            Op::Create => ("cannot create socket", "for"),
            Op::Bind => ("cannot bind", ""),
            Op::Listen => ("cannot listen", "on"),
            Op::Accept => ("cannot accept", "on"),
            Op::Connect => ("cannot connect", "to"),
            Op::Send => ("cannot send", "to"),
            Op::Receive => ("cannot receive", "from"),
            Op::Shutdown => ("cannot shut down", ""),
            Op::SetOption(_) => ("cannot set", "on"),
            Op::GetOption(_) => ("cannot read", "of"),
            Op::LocalAddress => ("cannot get the local address", "of"),
            Op::PeerAddress => ("cannot get the peer address", "of"),
            Op::Resolve => ("cannot resolve", ""),
            Op::HostName => ("cannot get the host name", ""),
            Op::Io => ("i/o error", "on"),
            Op::Spawn => ("cannot start", ""),
            Op::Load(_) => ("cannot load", ""),
            Op::Generate(_) => ("cannot generate", ""),
            Op::Handshake => ("TLS handshake failed", "with"),
            Op::Serve => ("cannot serve", "on"),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (verb, _) = self.phrase();
        match self {
            Op::SetOption(name) | Op::GetOption(name) | Op::Load(name) | Op::Generate(name) => {
                write!(f, "{verb} {name}")
            }
            _ => f.write_str(verb),
        }
    }
}

/// How tokio's panic begins when its blocking pool needs a thread and the system gives none
/// (a container at its `pids.max`). socketkit catches it where it starts blocking work and
/// reports it as an error (`no thread could be started for it`), so a program's panic hook
/// may leave panics that begin so unsaid, as the `socketkit` command's does.
pub const NO_THREAD_PANIC: &str = "OS can't spawn worker thread";

/// A failed socket operation: the operation, the address it was aimed at, and the OS error.
///
/// # Examples
///
/// ```
/// use socketkit::socket::{Family, Socket, Type};
///
/// let first = Socket::new(Family::Inet, Type::Stream)?;
/// first.bind(("127.0.0.1", 0))?;
/// first.listen(1)?;
/// let taken = first.local_addr()?;
///
/// let second = Socket::new(Family::Inet, Type::Stream)?;
/// let err = second.bind(&taken).unwrap_err();
/// assert_eq!(err.to_string(), format!("cannot bind {taken}: address already in use"));
/// assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
/// # Ok::<(), socketkit::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
pub struct Error {
    op: Op,
    target: Option<String>,
    /// The target is our own socket's address, not the peer the operation was aimed at.
    local: bool,
    /// Not the error's `source()`: its `Display` ends with the OS reason already, and a
    /// reporter that walks the chain (anyhow's `{:#}`) printed it twice. `io_error` gives it.
    os: io::Error,
}

impl Error {
    /// An error for `op` on `target` (an address or endpoint as the user wrote or sees it).
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::error::{Error, Op};
    /// let err = Error::new(Op::Connect, "127.0.0.1:9", std::io::Error::from_raw_os_error(libc::ECONNREFUSED));
    /// assert_eq!(err.to_string(), "cannot connect to 127.0.0.1:9: connection refused");
    /// ```
    pub fn new(op: Op, target: impl fmt::Display, source: io::Error) -> Error {
        Error {
            op,
            target: Some(target.to_string()),
            local: false,
            os: source,
        }
    }

    /// An error for `op` on our own socket at `local`, where the operation's target would
    /// be a peer that is not known (a receive on an unconnected datagram socket): it reads
    /// "on" the address rather than "from" or "to" it.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::error::{Error, Op};
    /// let err = Error::at_local(Op::Receive, "127.0.0.1:5000", std::io::ErrorKind::TimedOut.into());
    /// assert_eq!(err.to_string(), "cannot receive on 127.0.0.1:5000: timed out");
    /// assert_eq!((err.op(), err.target()), (Op::Receive, Some("127.0.0.1:5000")));
    /// ```
    pub fn at_local(op: Op, local: impl fmt::Display, source: io::Error) -> Error {
        Error {
            local: true,
            ..Error::new(op, local, source)
        }
    }

    /// An error for `op` with no address to name (an unconnected socket, the host name).
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::error::{Error, Op};
    /// let err = Error::without_target(Op::HostName, std::io::ErrorKind::PermissionDenied.into());
    /// assert_eq!(err.to_string(), "cannot get the host name: permission denied");
    /// ```
    pub fn without_target(op: Op, source: io::Error) -> Error {
        Error {
            op,
            target: None,
            local: false,
            os: source,
        }
    }

    /// The operation that failed.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::error::{Error, Op};
    /// let err = Error::new(Op::Connect, "127.0.0.1:9", std::io::Error::from_raw_os_error(libc::ECONNREFUSED));
    /// assert_eq!(err.op(), Op::Connect);
    /// ```
    pub fn op(&self) -> Op {
        self.op
    }

    /// The address or endpoint the operation was aimed at, if there was one.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::error::{Error, Op};
    /// let err = Error::new(Op::Connect, "127.0.0.1:9", std::io::Error::from_raw_os_error(libc::ECONNREFUSED));
    /// assert_eq!(err.target(), Some("127.0.0.1:9"));
    /// ```
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    /// The kind of the underlying OS error (`ConnectionRefused`, `AddrInUse`, `TimedOut`…).
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::error::{Error, Op};
    /// let err = Error::new(Op::Connect, "127.0.0.1:9", std::io::Error::from_raw_os_error(libc::ECONNREFUSED));
    /// assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    /// ```
    pub fn kind(&self) -> io::ErrorKind {
        self.os.kind()
    }

    /// The underlying OS error.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::error::{Error, Op};
    /// let err = Error::new(Op::Connect, "127.0.0.1:9", std::io::Error::from_raw_os_error(libc::ECONNREFUSED));
    /// assert_eq!(err.io_error().raw_os_error(), Some(libc::ECONNREFUSED));
    /// ```
    pub fn io_error(&self) -> &io::Error {
        &self.os
    }

    /// The underlying OS error, by value, for re-labelling it under another operation.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::error::{Error, Op};
    /// let err = Error::new(Op::Connect, "127.0.0.1:9", std::io::Error::from_raw_os_error(libc::ECONNREFUSED));
    /// let io = err.into_io_error();
    /// assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    /// ```
    pub fn into_io_error(self) -> io::Error {
        self.os
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.op)?;
        if let Some(target) = &self.target {
            match self.op.phrase().1 {
                "" => write!(f, " {target}")?,
                "to" | "from" if self.local => write!(f, " on {target}")?,
                preposition => write!(f, " {preposition} {target}")?,
            }
        }
        write!(f, ": {}", describe(&self.os))?;
        if self.os.raw_os_error() == Some(libc::EINVAL)
            && self.target.as_deref().is_some_and(is_unscoped_link_local)
        {
            f.write_str(" (a link-local address needs its interface, as [fe80::1%eth0])")?;
        }
        if self.op == Op::Connect && self.out_of_local_ports() {
            f.write_str(" (no local port is free: see net.ipv4.ip_local_port_range)")?;
        }
        Ok(())
    }
}

impl Error {
    /// Whether a connect failed for want of a local port to connect from: `EADDRNOTAVAIL`
    /// for TCP (connect(2)), `EAGAIN` for UDP, whose implicit bind finds none.
    fn out_of_local_ports(&self) -> bool {
        match self.os.raw_os_error() {
            Some(libc::EADDRNOTAVAIL) => true,
            Some(libc::EAGAIN) => self
                .target
                .as_deref()
                .is_some_and(|t| t.starts_with("udp:")),
            _ => false,
        }
    }
}

/// Whether `target` (as written: `tcp:[fe80::1]:80`) names an IPv6 link-local address with
/// no zone, which the kernel refuses with a bare `EINVAL`.
fn is_unscoped_link_local(target: &str) -> bool {
    let Some((_, rest)) = target.split_once('[') else {
        return false;
    };
    let Some((address, _)) = rest.split_once(']') else {
        return false;
    };
    !address.contains('%')
        && address
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|ip| ip.is_unicast_link_local())
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        io::Error::new(err.kind(), err)
    }
}

/// `text` for an error or log line: as it is up to 200 bytes, else its first 200 bytes (on
/// a character boundary), `…` and how long it was. A line of a file quoted whole made a
/// 15 MiB `error:` line, and a reload's warning too long for the log's queue was lost.
///
/// # Examples
///
/// ```
/// use socketkit::error::excerpt;
/// assert_eq!(excerpt("10.0.0.0/33"), "10.0.0.0/33");
/// let long = "x".repeat(1000);
/// assert_eq!(excerpt(&long), format!("{}… (1000 bytes)", "x".repeat(200)));
/// ```
pub fn excerpt(text: &str) -> std::borrow::Cow<'_, str> {
    const KEPT: usize = 200;
    if text.len() <= KEPT {
        return std::borrow::Cow::Borrowed(text);
    }
    let end = (0..=KEPT)
        .rev()
        .find(|&at| text.is_char_boundary(at))
        .unwrap_or(0);
    std::borrow::Cow::Owned(format!("{}… ({} bytes)", &text[..end], text.len()))
}

/// A peer's text (a Unix client's socket name, a SOCKS user name) as one word of a log
/// line's message: as it is when it is plain; else quoted and escaped (`Debug`), with `=`
/// as `\u{3d}` too, so that no reader finds a `key=value` field of the client's making in
/// it, even one that does not take quoted words in a message as one. (The logger escapes
/// line breaks and control characters itself.)
pub(crate) fn log_word(text: &str) -> std::borrow::Cow<'_, str> {
    let plain = !text.is_empty()
        && !text
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '=' | '"' | '\''));
    match plain {
        true => std::borrow::Cow::Borrowed(text),
        false => std::borrow::Cow::Owned(format!("{text:?}").replace('=', "\\u{3d}")),
    }
}

/// The reason in an OS error as words a user reads: `address already in use`, not
/// `Address already in use (os error 98)`.
///
/// # Examples
///
/// ```
/// let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
/// assert_eq!(socketkit::error::describe(&refused), "connection refused");
/// ```
pub fn describe(err: &io::Error) -> String {
    let text = match err.raw_os_error() {
        Some(code) => {
            let full = err.to_string();
            let suffix = format!(" (os error {code})");
            full.strip_suffix(&suffix).unwrap_or(&full).to_owned()
        }
        None if err.get_ref().is_some() => err.to_string(),
        None => err.kind().to_string(),
    };
    lower_first(&text)
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        // Only lower a capital that starts an ordinary word ("Connection refused"), not an
        // acronym such as "IPv6", whose second letter is also upper case.
        Some(first) if !chars.next().is_some_and(char::is_uppercase) => first
            .to_lowercase()
            .chain(text[first.len_utf8()..].chars())
            .collect(),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OS reason is in the message once: a reporter that walks `source()` (anyhow's
    /// `{:#}`) printed `…: connection refused: Connection refused (os error 111)`.
    #[test]
    fn the_os_reason_is_said_once_along_the_chain() {
        let err = Error::new(
            Op::Connect,
            "127.0.0.1:9",
            io::Error::from_raw_os_error(libc::ECONNREFUSED),
        );
        assert_eq!(
            err.to_string(),
            "cannot connect to 127.0.0.1:9: connection refused"
        );
        assert!(std::error::Error::source(&err).is_none());
        assert_eq!(err.io_error().raw_os_error(), Some(libc::ECONNREFUSED));
    }

    #[test]
    fn a_connect_out_of_local_ports_says_so() {
        let os = io::Error::from_raw_os_error;
        let tcp = Error::new(Op::Connect, "tcp:127.0.0.1:9", os(libc::EADDRNOTAVAIL));
        let udp = Error::new(Op::Connect, "udp:127.0.0.1:9", os(libc::EAGAIN));
        for err in [tcp, udp] {
            assert!(
                err.to_string()
                    .ends_with("(no local port is free: see net.ipv4.ip_local_port_range)"),
                "{err}"
            );
        }
        let bind = Error::new(Op::Bind, "127.0.0.2:0", os(libc::EADDRNOTAVAIL)).to_string();
        assert!(!bind.contains("local port"), "{bind}");
    }

    #[test]
    fn a_link_local_address_without_its_zone_is_named_as_such() {
        let invalid = || io::Error::from_raw_os_error(libc::EINVAL);
        let hinted = Error::new(Op::Connect, "tcp:[fe80::1]:9", invalid()).to_string();
        assert!(
            hinted.ends_with("needs its interface, as [fe80::1%eth0])"),
            "{hinted}"
        );
        for plain in ["tcp:[fe80::1%lo]:9", "tcp:[::1]:9", "tcp:127.0.0.1:9"] {
            let text = Error::new(Op::Connect, plain, invalid()).to_string();
            assert!(text.ends_with(": invalid argument"), "{text}");
        }
    }

    #[test]
    fn os_errors_read_as_lower_case_words() {
        let err = Error::new(
            Op::Bind,
            "0.0.0.0:80",
            io::Error::from_raw_os_error(libc::EACCES),
        );
        assert_eq!(err.to_string(), "cannot bind 0.0.0.0:80: permission denied");
    }

    #[test]
    fn custom_errors_keep_their_text() {
        let err = Error::without_target(
            Op::Receive,
            io::Error::new(io::ErrorKind::TimedOut, "timed out"),
        );
        assert_eq!(err.to_string(), "cannot receive: timed out");
    }

    #[test]
    fn acronyms_are_not_lowered() {
        assert_eq!(lower_first("IPv6 is off"), "IPv6 is off");
        assert_eq!(lower_first("Name unknown"), "name unknown");
    }

    #[test]
    fn converts_into_io_error_keeping_kind_and_text() {
        let err = Error::new(
            Op::Connect,
            "127.0.0.1:9",
            io::Error::from_raw_os_error(libc::ECONNREFUSED),
        );
        let io: io::Error = err.into();
        assert_eq!(io.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(
            io.to_string(),
            "cannot connect to 127.0.0.1:9: connection refused"
        );
    }
}
