//! The PROXY protocol of HAProxy (v1 text and v2 binary headers): what a load balancer puts
//! before a connection's bytes to say who the client really is.
//!
//! [`parse()`] reads a header from the start of a buffer and says how many bytes it took, or
//! that more are needed, without ever looking past the header's end: the bytes after it are
//! the service's. [`encode()`] (or [`encode_v1`] and [`encode_v2`]) writes headers for
//! `forward --send-proxy`; [`encode_with`] adds the TLVs of [`Tlvs`] (server name, ALPN,
//! the client's TLS session), which [`v2_tlvs`] reads back. [`read_header`] takes a header off a blocking socket (`listen`).
//! The specification is HAProxy's `doc/proxy-protocol.txt`.

mod encode;
mod gather;
mod parse;
mod read;
mod tlv;

pub use encode::{encode, encode_v1, encode_v2, encode_with};
pub use parse::{MAX_V1_LEN, MAX_V2_LEN, parse, v2_tlvs};
pub use read::{read_header, read_header_with_len};
pub use tlv::{Tls, Tlvs};

pub(crate) use gather::{Gather, Seen};

use std::net::SocketAddr;

use crate::socket::Address;

/// The v2 signature: `\r\n\r\n\0\r\nQUIT\n`.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 header's fixed part: signature, version and command, family, and the length of
/// what follows it.
const PREAMBLE: usize = 16;

/// Which of the two header formats to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The text header: `PROXY TCP4 SOURCE DESTINATION SPORT DPORT\r\n`.
    V1,
    /// The binary header.
    V2,
}

/// What a complete header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The connection was proxied: the real client and the address it connected to.
    Proxied {
        /// The client.
        source: SocketAddr,
        /// The address the client connected to, at the proxy.
        destination: SocketAddr,
    },
    /// The proxy speaks for itself (a v2 `LOCAL` command, as in health checks; a v1
    /// `UNKNOWN`; or an address family that carries no IP address): the connection's own
    /// peer address stands.
    Local,
}

impl ProxyHeader {
    /// The client the header names, as socketkit names a peer — an IPv4 client that a
    /// dual-stack proxy (HAProxy's `bind :::PORT v4v6`) gives in its IPv4-mapped form is
    /// the IPv4 address, as a dual-stack listener's own peers are — or `None` for
    /// [`ProxyHeader::Local`], whose connection's own peer stands.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::proxy_protocol::ProxyHeader;
    /// let header = ProxyHeader::Proxied {
    ///     source: "[::ffff:192.0.2.7]:4000".parse().unwrap(),
    ///     destination: "[::1]:80".parse().unwrap(),
    /// };
    /// assert_eq!(header.client().unwrap().to_string(), "192.0.2.7:4000");
    /// assert!(ProxyHeader::Local.client().is_none());
    /// ```
    pub fn client(&self) -> Option<Address> {
        match self {
            ProxyHeader::Proxied { source, .. } => Some(Address::from(*source).to_canonical()),
            ProxyHeader::Local => None,
        }
    }
}

/// What [`parse()`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header of `len` bytes; the service's bytes start after it.
    Complete {
        /// The header.
        header: ProxyHeader,
        /// Its length in bytes.
        len: usize,
    },
    /// So far a valid beginning: read more. Every byte seen belongs to the header.
    Incomplete,
}

/// Why bytes are not a PROXY header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// Neither signature: not a PROXY header at all.
    #[error("no PROXY protocol header")]
    Missing,
    /// A v1 header that breaks the grammar.
    #[error("invalid PROXY v1 header: {0}")]
    V1(&'static str),
    /// A v2 header that breaks the format.
    #[error("invalid PROXY v2 header: {0}")]
    V2(&'static str),
    /// A header longer than this implementation accepts.
    #[error("PROXY header longer than {0} bytes")]
    TooLong(usize),
}
