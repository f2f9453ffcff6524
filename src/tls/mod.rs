//! TLS on [rustls](https://docs.rs/rustls) (SPEC §3.1): server and client configurations
//! from PEM files, throwaway self-signed certificates, mutual TLS, ALPN, and errors in words.
//!
//! # Organization
//! - [`server_config`] and [`ServerOptions`]: a `rustls::ServerConfig` from a certificate and
//!   key ([`Identity::Files`]), several chosen by the name a client asks for
//!   ([`Identity::ByName`]), or a self-signed certificate ([`Identity::SelfSigned`]), with
//!   client certificates required when a CA file is given; [`ReloadableServerConfig`], the
//!   same read again from its files while the server runs (certificate rotation).
//! - [`client_config`], [`ClientOptions`] and [`Connector`]: a `rustls::ClientConfig` that
//!   verifies servers against the system's CA store, a CA file, a pinned certificate
//!   ([`Fingerprint`]), or (insecure) nothing, and the handshake over any async stream.
//! - [`load_certificates`], [`load_private_key`]: PEM files, with reasons in words.
//! - [`describe()`]: a TLS error as a sentence (`certificate has expired: …`).
//! - [`Validity`]: when a server's own certificate is valid, and whether it expires soon.
//! - [`TlsSession`]: what a client's session is (version, SNI, ALPN, its certificate);
//!   [`summary()`]: a session in one line for a log.
//! - [`read_client_hello`]: a client's ClientHello and the name it asks for, read off a
//!   connection that is relayed, not terminated (routing by SNI); [`check_server_name`]:
//!   whether a name (or a `*.` wildcard) is one a client can ask for.
//!
//! The cryptography is *ring*'s ([`provider`]): it builds with a C compiler alone, where
//! aws-lc-rs also wants CMake or a pre-built library and takes several times longer to build.
//! No OpenSSL is linked.
//!
//! # Examples
//!
//! A self-signed server and a client that trusts its certificate, over a pipe in memory:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use socketkit::endpoint::Host;
//! use socketkit::tls::{ClientOptions, Connector, Identity, ServerOptions, client_config, server_config};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let server = server_config(&ServerOptions::new(Identity::SelfSigned(vec!["localhost".into()])))?;
//! let dir = tempfile::tempdir()?;
//! let ca = dir.path().join("ca.pem");
//! std::fs::write(&ca, &server.self_signed.as_ref().unwrap().pem)?;
//! let client = client_config(&ClientOptions { ca: Some(ca), ..ClientOptions::default() })?;
//!
//! let (near, far) = tokio::io::duplex(64 * 1024);
//! let acceptor = tokio_rustls::TlsAcceptor::from(server.config);
//! let serving = tokio::spawn(async move {
//!     let mut tls = acceptor.accept(far).await?;
//!     tls.write_all("你好".as_bytes()).await?;
//!     tls.shutdown().await // close_notify, then the end of the stream
//! });
//! let mut tls = Connector::new(client).connect(&Host::Name("localhost".into()), near).await?;
//! let mut got = String::new();
//! tls.read_to_string(&mut got).await?;
//! assert_eq!(got, "你好");
//! serving.await??;
//! # Ok(()) }
//! ```

mod by_name;
mod chain;
mod client;
mod describe;
mod fingerprint;
mod hello;
mod names;
mod pem;
mod reloadable;
mod server;
mod session;
mod validity;

use std::sync::{Arc, OnceLock};

pub use client::{ClientOptions, Connector, client_config};
pub use describe::describe;
pub(crate) use describe::{TRUNCATED, handshake_failure, in_words, words_of};
pub use fingerprint::{Fingerprint, NotAFingerprint};
pub use hello::{ClientHello, ClientHelloError, MAX_CLIENT_HELLO, read_client_hello};
pub(crate) use names::ServerNames;
pub use names::{InvalidServerName, check_server_name};
pub use pem::{load_ca_certificates, load_certificates, load_private_key};
pub use reloadable::ReloadableServerConfig;
pub use server::{Identity, SelfSigned, ServerOptions, ServerTls, server_config};
pub use session::{TlsSession, summary};
pub use validity::{Standing, Validity};

/// The rustls version socketkit is built with, for configurations made by hand.
pub use rustls;
/// The tokio-rustls version socketkit is built with: the stream types of handshakes.
pub use tokio_rustls;

/// The cryptography every configuration here uses: *ring*, with rustls's default cipher
/// suites (TLS 1.3 and 1.2, AES-GCM and ChaCha20-Poly1305, ECDHE only).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}
