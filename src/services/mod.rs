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

mod answer;
pub(crate) mod buffers;
mod catalog;
pub mod chargen;
pub mod daytime;
pub mod discard;
pub mod echo;
pub mod exec;
pub mod greeting;
pub mod qotd;
pub mod time;

pub use catalog::{
    Configured, Misplaced, Service, ServiceError, ServiceOption, ServiceOptions, UnknownService,
};

/// Whether a service that answers every datagram answers one from `peer`: not from a port
/// below 1024, where another host's echo, chargen, daytime or time service answers from.
/// Answering one would start a loop between the two services that runs until one of them
/// is stopped (the echo–chargen "fraggle" loop, CVE-1999-0103), and a spoofed source
/// address is all it takes; clients send from ephemeral ports. xinetd's internal services
/// drop the same (its `bad_port_check`).
pub(crate) fn answers_datagram_from(peer: &crate::socket::Address) -> bool {
    let answered = peer.port().is_none_or(|port| port >= 1024);
    if !answered {
        tracing::debug!(%peer, "not answered: a datagram from a port below 1024 (another service's answer, or a spoofed one)");
    }
    answered
}
