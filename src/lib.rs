//! socketkit makes network programming in Rust simple and correct, at the two levels the
//! classic tutorial names: a BSD socket layer ([`socket`]) that a reader of Python's `socket`
//! module recognises, and a server framework ([`server`]) with which a server is a few lines.
//!
//! # Organization
//! - [`socket`]: `Socket::new(Family, Type)`, `bind`, `listen`, `accept`, `connect`,
//!   `send`/`sendall`/`recv`, options, `gethostname`, `getaddrinfo`, `create_connection`,
//!   `create_server`, `socketpair`.
//! - [`access`]: allow/deny rules and per-source limits for accepted connections.
//! - [`endpoint`]: the `tcp:HOST:PORT` / `udp:` / `unix:` / `unixgram:` syntax.
//! - [`server`]: listeners, the connection pipeline (admission stages), handlers, limits and
//!   graceful shutdown on tokio.
//! - [`services`]: the classic internet services (greeting, echo, …) and their catalog.
//! - [`tls`]: TLS on rustls: server and client configurations, the client's handshake.
//! - [`client`]: netcat: connect or listen, and bridge the socket with input and output.
//! - [`forward`]: a relay from every accepted connection to a target endpoint.
//! - [`bench`](mod@bench): the load generator behind `socketkit bench`.
//! - [`proxy_protocol`]: HAProxy's PROXY v1/v2 headers, parsed and written.
//! - [`metrics`]: Prometheus metrics and the `/metrics` + `/health` endpoint.
//! - [`error`]: the error type every operation returns.
//! - [`guide`]: a walk from the tutorial's raw-socket server to `socketkit::server`.
//!
//! Beneath them, two private modules: `net`, where an endpoint becomes sockets for every
//! part above, and `sys`, the raw system calls. `docs/architecture.md` draws the layers and
//! what each may import; a test holds the code to it.
//!
//! # Examples
//!
//! The tutorial's exchange, a greeting of `你好`, over the low-level layer:
//!
//! ```
//! use socketkit::socket::{create_connection, create_server};
//!
//! let server = create_server(("127.0.0.1", 0), 5, false)?;
//! let client = create_connection(&server.local_addr()?, None)?;
//! let (conn, _addr) = server.accept()?;
//! conn.sendall("你好".as_bytes())?;
//! conn.close();
//! assert_eq!(String::from_utf8_lossy(&client.recv(1024)?), "你好");
//! # Ok::<(), socketkit::Error>(())
//! ```

#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![doc(test(attr(deny(warnings))))]

#[cfg(not(unix))]
compile_error!("socketkit supports Unix-like systems (Linux first) only");

pub mod access;
pub mod bench;
pub mod client;
#[doc = include_str!("../docs/guide.md")]
pub mod guide {}
pub mod endpoint;
pub mod error;
pub mod forward;
pub mod metrics;
mod net;
pub mod option_file;
pub mod proxy_protocol;
pub mod server;
pub mod services;
pub mod socket;
mod sys;
pub mod tls;

pub use error::{Error, Result};
