//! Shared pieces of the integration tests, split by what they do.

pub mod certs;
pub mod haproxy;
pub mod net;
pub mod process;
pub mod restart;
pub mod tls_peers;
pub mod tools;

/// The result type tests return, so that `?` works on any error.
pub type TestResult = Result<(), Box<dyn std::error::Error>>;
