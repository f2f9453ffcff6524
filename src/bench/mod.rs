//! The load generator behind `socketkit bench`, in the shape of quinn's `perf`: a fixed
//! number of concurrent workers (closed loop) or a fixed arrival rate (open loop, for latency
//! under a known load), bounded by duration, count and Ctrl-C, with a warm-up that is not
//! counted; statistics in [`stats`], the picture in [`plot`].
//!
//! # Modes
//! - `greeting`: each operation is a connection — connect, read to end, compare with
//!   `expect`, close. On a datagram endpoint: send one datagram, compare the answer.
//! - `echo`: each connection streams `size`-byte blocks with at most `window` bytes
//!   unanswered and checks every byte; each block's round trip is one operation. On a
//!   datagram endpoint: send `size` bytes, expect them back.
//! - `idle`: open `connections` connections, hold them for the duration, report how many the
//!   server still holds at the end and what holding them cost in memory ([`memory`]).
//!
//! The [`report`] of a run carries its configuration and time series, so that a saved one
//! (`--json`) can be read back and compared with another ([`compare`], [`plot`]).

pub mod compare;
mod config;
mod fast;
mod load;
pub mod memory;
mod mode;
pub mod plot;
pub mod report;
mod signal;
pub mod stats;

pub use config::{Config, Mode, reserve_descriptors};
pub use load::run;
pub use report::{Report, Setup};
pub use signal::Signal;
pub use stats::{Failure, Stats};
