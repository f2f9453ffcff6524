//! The classic internet services, one file per RFC, each an ordinary server handler.
//!
//! | service | TCP / Unix stream | UDP / Unix datagram |
//! |---|---|---|
//! | [`greeting`] | the message (default `你好`), then close | the message per datagram |
//! | [`echo`] (RFC 862) | every byte back until the client closes | each datagram back |
//! | [`discard`] (RFC 863) | read and drop until the client closes | drop |
//! | [`chargen`] (RFC 864) | the rotating 72-character lines until the client closes | 0–512 bytes of them |
//! | [`daytime`] (RFC 867) | one date-time line, then close | the same line |
//! | [`qotd`] (RFC 865) | one quote (< 512 bytes), then close | the same |
//! | [`time`] (RFC 868) | 4 bytes, seconds since 1900, then close | the same |
//! | [`exec`] | a program per connection on the socket | — |

mod buffers;
pub mod chargen;
pub mod daytime;
pub mod discard;
pub mod echo;
pub mod exec;
pub mod greeting;
pub mod qotd;
pub mod time;

use std::fmt;
use std::io;
use std::str::FromStr;

use tokio::io::AsyncWriteExt;

use crate::server::Connection;

/// The whole of greeting, daytime, qotd and time over a stream: write one answer, then close
/// our side so the client reads end of stream.
async fn answer_and_close(mut conn: Connection, answer: impl AsRef<[u8]>) -> io::Result<()> {
    conn.write_all(answer.as_ref()).await?;
    conn.shutdown().await
}

/// A built-in service, by the name the command line uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// [`greeting`]: send a message, then close.
    Greeting,
    /// [`echo`]: RFC 862.
    Echo,
    /// [`discard`]: RFC 863.
    Discard,
    /// [`chargen`]: RFC 864.
    Chargen,
    /// [`daytime`]: RFC 867.
    Daytime,
    /// [`qotd`]: RFC 865.
    Qotd,
    /// [`time`]: RFC 868.
    Time,
    /// [`exec`]: a program per connection.
    Exec,
}

impl Service {
    /// Every service, in the order `socketkit serve --help` lists them.
    pub const ALL: [Service; 8] = [
        Service::Greeting,
        Service::Echo,
        Service::Discard,
        Service::Chargen,
        Service::Daytime,
        Service::Qotd,
        Service::Time,
        Service::Exec,
    ];

    /// The name used on the command line and in the `listening on` line.
    pub fn name(self) -> &'static str {
        match self {
            Service::Greeting => "greeting",
            Service::Echo => "echo",
            Service::Discard => "discard",
            Service::Chargen => "chargen",
            Service::Daytime => "daytime",
            Service::Qotd => "qotd",
            Service::Time => "time",
            Service::Exec => "exec",
        }
    }

    /// Whether the service answers datagrams (UDP, Unix datagram) too.
    pub fn serves_datagrams(self) -> bool {
        self != Service::Exec
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a built-in service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown service '{0}' (expected one of: {list})", list = Service::ALL.map(Service::name).join(", "))]
pub struct UnknownService(pub String);

impl FromStr for Service {
    type Err = UnknownService;

    fn from_str(name: &str) -> Result<Service, UnknownService> {
        Service::ALL
            .into_iter()
            .find(|service| service.name() == name)
            .ok_or_else(|| UnknownService(name.to_owned()))
    }
}
