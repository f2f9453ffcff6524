//! A load test's settings: what kind of load ([`Mode`]), how much and for how long
//! ([`Config`]), what the report records of them ([`Config::setup`]), and the descriptors a
//! run needs ([`reserve_descriptors`]).

use std::time::Duration;

use super::report::Setup;

/// Extra payload bytes past one block, so that consecutive echo blocks differ.
pub(super) const PAYLOAD_SLACK: usize = 251;

/// What kind of load to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A connection per operation, read to end.
    Greeting,
    /// Verified blocks streamed through long-lived connections.
    Echo,
    /// Connections opened and held.
    Idle,
}

impl Mode {
    /// The mode's name, as `--mode` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Greeting => "greeting",
            Mode::Echo => "echo",
            Mode::Idle => "idle",
        }
    }
}

/// A load test's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// What kind of load.
    pub mode: Mode,
    /// Concurrent workers (greeting, echo) or connections to hold (idle).
    pub connections: usize,
    /// How long to measure, after the warm-up.
    pub duration: Duration,
    /// How long to run before counting.
    pub warmup: Duration,
    /// Open loop: start this many operations per second (at most `connections` at once)
    /// instead of keeping `connections` busy.
    pub rate: Option<f64>,
    /// Stop after this many completed operations.
    pub count: Option<u64>,
    /// Greeting: the bytes every answer must be.
    pub expect: Option<Vec<u8>>,
    /// Echo: block size in bytes.
    pub size: usize,
    /// Echo: bytes in flight per connection.
    pub window: usize,
    /// Give up on one operation after this long without finishing it.
    pub timeout: Duration,
    /// Timeline bucket width (for the report).
    pub interval: Duration,
    /// Threads generating load (closed-loop stream greeting runs one readiness loop each).
    pub threads: usize,
    /// `tls:` endpoints: how servers are verified (default: against the system's CA
    /// store). Every connection makes its handshake before its operation, and the handshake
    /// counts in its latency.
    pub tls: Option<crate::tls::Connector>,
    /// Idle: the server's process, whose memory is read before and while the connections
    /// are held.
    pub server_pid: Option<u32>,
    /// TCP targets: start every connection with a PROXY protocol header of this version,
    /// carrying the connection's real source and destination — in the same send as the
    /// first request bytes where the mode sends any (echo), else on its own right after
    /// connect (greeting, idle; before a `tls:` handshake).
    pub send_proxy: Option<crate::proxy_protocol::Version>,
    pub(super) payload: Vec<u8>,
    pub(super) echo: bool,
    /// `tls:` endpoints: the server's host, for the server name.
    pub(super) tls_host: Option<crate::endpoint::Host>,
}

impl Config {
    /// A configuration with defaults: 64 connections, 5 s, 1 s warm-up, 4 KiB blocks.
    pub fn new(mode: Mode) -> Config {
        Config {
            mode,
            connections: 64,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            rate: None,
            count: None,
            expect: None,
            size: 4096,
            window: 4096,
            timeout: Duration::from_secs(5),
            interval: Duration::from_millis(250),
            threads: 1,
            tls: None,
            server_pid: None,
            send_proxy: None,
            payload: Vec::new(),
            echo: false,
            tls_host: None,
        }
    }

    /// The configuration as the report records it (and the table's header shows it).
    pub fn setup(&self) -> Setup {
        let echo = self.mode == Mode::Echo;
        Setup {
            connections: self.connections,
            size: echo.then_some(self.size.max(1)),
            window: echo.then_some(self.window.max(self.size.max(1))),
            duration_s: self.duration.as_secs_f64(),
            // Idle runs open their connections once, with no warm-up (see `prepared`).
            warmup_s: match self.mode {
                Mode::Idle => 0.0,
                _ => self.warmup.as_secs_f64(),
            },
            rate: self.rate,
            count: self.count,
            threads: self.threads,
        }
    }

    /// The TLS client and server host of a `tls:` run.
    pub(super) fn tls_target(&self) -> Option<(&crate::tls::Connector, &crate::endpoint::Host)> {
        self.tls.as_ref().zip(self.tls_host.as_ref())
    }

    pub(super) fn prepared(mut self) -> Config {
        if self.mode == Mode::Idle {
            // Idle connections are opened once: there is nothing to warm up, and opening
            // them is what is counted.
            self.warmup = Duration::ZERO;
        }
        self.size = self.size.max(1);
        self.window = self.window.max(self.size);
        self.echo = self.mode == Mode::Echo;
        // Deterministic pseudo-random bytes (xorshift): a corrupted byte shows.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        self.payload = (0..self.size + PAYLOAD_SLACK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        self
    }
}

/// Descriptors a run needs besides its connections: the runtime's, the readiness loops'
/// epoll instances, stdio, a report file. A run of two connections on two threads held
/// 13 (echo) and 15 (greeting) at once; the rest is margin. (It was 64 and more, which
/// refused `-c 2` under `ulimit -n 64`.)
fn descriptor_headroom(config: &Config) -> u64 {
    24 + 2 * config.threads as u64
}

/// Makes room for the descriptors a run of `config` needs (one per connection, plus the
/// runtime's): raises the soft open-file limit towards the hard one if need be.
///
/// # Errors
///
/// When even the hard limit is too low (the run would spend itself on `EMFILE`): the most
/// connections the limit allows.
pub fn reserve_descriptors(config: &Config) -> std::result::Result<(), u64> {
    let headroom = descriptor_headroom(config);
    let wanted = config.connections as u64 + headroom;
    let limit = crate::net::raise_descriptor_limit(wanted);
    if limit >= wanted {
        Ok(())
    } else {
        Err(limit.saturating_sub(headroom))
    }
}
