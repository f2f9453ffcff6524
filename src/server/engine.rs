//! [`IoEngine`]: how a server waits for its stream listeners and connections — tokio's epoll
//! reactor, or io_uring where the kernel has it — and [`Routine`], what a handler declares
//! so that the io_uring engine can run it without calling it.

use std::fmt;
use std::str::FromStr;

/// The variable that sets a server's default engine (`auto`, `epoll` or `io_uring`): a
/// whole test suite or a deployment can switch engines without touching the code.
pub const IO_ENGINE_VAR: &str = "SOCKETKIT_IO_ENGINE";

/// How a server waits for connections and their bytes.
///
/// The io_uring engine (Linux 5.19 and later) serves a stream listener — TCP or Unix, not
/// `tls:` — whose handler is one it can run in the kernel's queue: an immediate reply
/// ([`Handler::immediate_reply`](super::Handler::immediate_reply): greeting, daytime, qotd,
/// time) or a [`Routine`] (echo, discard), on a server with no admission stages and no
/// `max_connections`, and for a routine no `idle_timeout`. Everything else is served by
/// tokio's epoll reactor whatever the engine says, as are datagram listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoEngine {
    /// io_uring where the kernel has it and the listener qualifies, else epoll.
    #[default]
    Auto,
    /// tokio's epoll reactor for everything.
    Epoll,
    /// io_uring for every listener that qualifies; binding fails if the kernel lacks it.
    IoUring,
}

impl IoEngine {
    /// The engine [`IO_ENGINE_VAR`] names, or `Auto` when it is unset or empty (a blank
    /// `Environment=` line, `export SOCKETKIT_IO_ENGINE=$UNSET`).
    ///
    /// # Errors
    ///
    /// The variable is set to something else than `auto`, `epoll` or `io_uring`.
    pub fn from_env() -> Result<IoEngine, UnknownEngine> {
        match std::env::var(IO_ENGINE_VAR) {
            Ok(value) if !value.is_empty() => value.parse(),
            _ => Ok(IoEngine::Auto),
        }
    }

    /// The engine's name, as [`FromStr`] reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            IoEngine::Auto => "auto",
            IoEngine::Epoll => "epoll",
            IoEngine::IoUring => "io_uring",
        }
    }
}

impl fmt::Display for IoEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IoEngine {
    type Err = UnknownEngine;

    fn from_str(s: &str) -> Result<IoEngine, UnknownEngine> {
        match s {
            "auto" => Ok(IoEngine::Auto),
            "epoll" => Ok(IoEngine::Epoll),
            "io_uring" | "io-uring" | "uring" => Ok(IoEngine::IoUring),
            other => Err(UnknownEngine(other.to_owned())),
        }
    }
}

/// An engine name that is none of `auto`, `epoll`, `io_uring`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown I/O engine '{0}' (expected auto, epoll or io_uring)")]
pub struct UnknownEngine(pub String);

/// What a handler does, when it is one of the routines the io_uring engine runs itself: the
/// engine then never calls the handler (tokio's engine does, so the handler must really do
/// what it declares).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Routine {
    /// Sends back every byte, in order, until the client closes (RFC 862).
    Echo,
    /// Reads and drops every byte until the client closes (RFC 863).
    Discard,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_ones_are_named() {
        for engine in [IoEngine::Auto, IoEngine::Epoll, IoEngine::IoUring] {
            assert_eq!(engine.as_str().parse::<IoEngine>(), Ok(engine));
        }
        assert_eq!("io-uring".parse::<IoEngine>(), Ok(IoEngine::IoUring));
        let err = "kqueue".parse::<IoEngine>().expect_err("not an engine");
        assert_eq!(
            err.to_string(),
            "unknown I/O engine 'kqueue' (expected auto, epoll or io_uring)"
        );
    }
}
