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
