//! A TLS client's first message, its ClientHello, read off a connection that is not ours to
//! terminate: a relay that routes by the server name the client asks for (SNI, as HAProxy's
//! `req.ssl_sni` and nginx's `ssl_preread` do) reads the hello, chooses a target, and
//! passes the very bytes it read on before relaying the rest. A hello split over several
//! records or segments is read whole. Only its structure and its server name are read:
//! which versions and ciphers it offers is for the target to judge, so a TLS 1.0 or 1.1
//! hello (which rustls's own parser refuses, for want of what TLS 1.2 requires) is routed
//! as HAProxy routes it.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The most a ClientHello may take, its records' headers included; a handshake message
/// can say it is up to 16 MiB long, and a relay must not buffer that for a stranger. Real
/// ones are under 2 KiB, a few KiB with post-quantum key shares.
pub const MAX_CLIENT_HELLO: usize = 64 * 1024;

/// A TLS record of the handshake protocol (RFC 8446 §5.1).
const HANDSHAKE_RECORD: u8 = 0x16;
/// The handshake message a client begins with.
const CLIENT_HELLO: u8 = 1;
/// The longest a record's fragment may be (2^14), with the room TLS 1.2 allowed a
/// compressed or protected one.
const MAX_FRAGMENT: usize = (1 << 14) + 2048;
/// The extension that names the server (RFC 6066 §3), and its one kind of name.
const SERVER_NAME: u16 = 0;
const HOST_NAME: u8 = 0;

/// What a client's ClientHello asked for, and the bytes it came in.
#[derive(Debug, Clone)]
pub struct ClientHello {
    /// Every byte read from the client so far, to be sent on first.
    pub bytes: Vec<u8>,
    /// The server name the client asked for (SNI), if it asked for one, in lower case.
    pub server_name: Option<String>,
}

/// Why a connection's first bytes are not a ClientHello to route by.
#[derive(Debug, thiserror::Error)]
pub enum ClientHelloError {
    /// The first byte is not a TLS handshake record's (a plain-text protocol, or TLS
    /// behind something else).
    #[error(
        "the client's first bytes are not TLS (a handshake record starts with 0x16, not {0:#04x})"
    )]
    NotTls(u8),
    /// The bytes are not a ClientHello.
    #[error("the client's ClientHello is malformed: {0}")]
    Malformed(&'static str),
    /// The hello ran past [`MAX_CLIENT_HELLO`].
    #[error("the client's ClientHello is longer than {MAX_CLIENT_HELLO} bytes")]
    TooLong,
    /// The client closed before its hello was whole.
    #[error("the client closed before its ClientHello was complete ({0} bytes)")]
    Closed(usize),
    /// Reading failed.
    #[error("cannot read the client's ClientHello: {0}")]
    Io(#[from] io::Error),
}

/// Reads `client`'s ClientHello, and nothing after it that had not come with it.
///
/// # Errors
///
/// See [`ClientHelloError`]; the caller bounds the time it may take.
pub async fn read_client_hello<R>(client: &mut R) -> Result<ClientHello, ClientHelloError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = client.read(&mut chunk).await?;
        if read == 0 {
            return Err(ClientHelloError::Closed(bytes.len()));
        }
        if bytes.is_empty() && chunk[0] != HANDSHAKE_RECORD {
            return Err(ClientHelloError::NotTls(chunk[0]));
        }
        if bytes.len() + read > MAX_CLIENT_HELLO {
            return Err(ClientHelloError::TooLong);
        }
        bytes.extend_from_slice(&chunk[..read]);
        if let Some(message) = hello_message(&bytes)? {
            let server_name = server_name(&message)?;
            return Ok(ClientHello { bytes, server_name });
        }
    }
}

/// The ClientHello message (its body) from the handshake records `bytes` begins with, once
/// they hold all of it; `None` until then.
fn hello_message(mut bytes: &[u8]) -> Result<Option<Vec<u8>>, ClientHelloError> {
    use ClientHelloError::Malformed;
    let mut message = Vec::new();
    loop {
        if let [kind, a, b, c, body @ ..] = message.as_slice() {
            if *kind != CLIENT_HELLO {
                return Err(Malformed(
                    "the first handshake message is not a ClientHello",
                ));
            }
            let len = usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c);
            if body.len() >= len {
                return Ok(Some(body[..len].to_vec()));
            }
        }
        let [kind, major, _minor, high, low, rest @ ..] = bytes else {
            return Ok(None);
        };
        if *kind != HANDSHAKE_RECORD {
            return Err(Malformed(
                "another record came before the ClientHello was whole",
            ));
        }
        if *major != 3 {
            return Err(Malformed("the record's version is not TLS's"));
        }
        let len = usize::from(*high) << 8 | usize::from(*low);
        if len == 0 || len > MAX_FRAGMENT {
            return Err(Malformed("a record's length is out of bounds"));
        }
        let Some((fragment, after)) = rest.split_at_checked(len) else {
            return Ok(None);
        };
        message.extend_from_slice(fragment);
        bytes = after;
    }
}

/// The host name of the hello's server name extension, if it has one that is a DNS name
/// (an address or a name that is no DNS name routes as none, as rustls has it).
fn server_name(hello: &[u8]) -> Result<Option<String>, ClientHelloError> {
    let mut hello = Fields(hello);
    hello.take(2usize + 32)?; // version, random
    let session_id = hello.u8()?;
    hello.take(session_id)?;
    let cipher_suites = hello.u16()?;
    hello.take(cipher_suites)?;
    let compressions = hello.u8()?;
    hello.take(compressions)?;
    if hello.0.is_empty() {
        return Ok(None); // a hello without extensions (SSL 3.0's kind)
    }
    let len = hello.u16()?;
    let mut extensions = Fields(hello.take(len)?);
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let len = extensions.u16()?;
        let data = extensions.take(len)?;
        if kind != SERVER_NAME {
            continue;
        }
        let mut data = Fields(data);
        let len = data.u16()?;
        let mut names = Fields(data.take(len)?);
        while !names.0.is_empty() {
            let kind = names.u8()?;
            let len = names.u16()?;
            let name = names.take(len)?;
            if kind == HOST_NAME {
                return Ok(host_name(name));
            }
        }
        return Ok(None);
    }
    Ok(None)
}

/// `name` in lower case, if it is a DNS name.
fn host_name(name: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(name).ok()?;
    rustls::pki_types::DnsName::try_from(name).ok()?;
    Some(name.to_ascii_lowercase())
}

/// The fields of a hello, read front to back.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    /// The next `len` bytes.
    fn take(&mut self, len: impl Into<usize>) -> Result<&'a [u8], ClientHelloError> {
        let (taken, rest) =
            self.0
                .split_at_checked(len.into())
                .ok_or(ClientHelloError::Malformed(
                    "a field runs past the hello's end",
                ))?;
        self.0 = rest;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8, ClientHelloError> {
        Ok(self.take(1usize)?[0])
    }

    fn u16(&mut self) -> Result<u16, ClientHelloError> {
        let bytes = self.take(2usize)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The first flight of a real rustls client asking for `name`.
    fn hello_for(name: &str) -> Vec<u8> {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("default versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(name.to_owned()).expect("a name");
        let mut client = rustls::ClientConnection::new(Arc::new(config), name).expect("a client");
        let mut hello = Vec::new();
        client.write_tls(&mut hello).expect("the hello");
        hello
    }

    async fn read_all_of(input: Vec<u8>) -> Result<ClientHello, ClientHelloError> {
        let (mut near, mut far) = tokio::io::duplex(1 << 20);
        tokio::io::AsyncWriteExt::write_all(&mut near, &input)
            .await
            .expect("written");
        drop(near);
        read_client_hello(&mut far).await
    }

    #[tokio::test]
    async fn the_server_name_and_every_byte_read() {
        let hello = hello_for("shop.example.com");
        let read = read_all_of(hello.clone()).await.expect("a hello");
        assert_eq!(read.server_name.as_deref(), Some("shop.example.com"));
        assert_eq!(read.bytes, hello);
    }

    #[tokio::test]
    async fn a_hello_that_arrives_a_byte_at_a_time() {
        let hello = hello_for("api.example.com");
        let (mut near, mut far) = tokio::io::duplex(1);
        let sending = tokio::spawn(async move {
            for byte in hello {
                tokio::io::AsyncWriteExt::write_all(&mut near, &[byte]).await?;
            }
            // Kept open: the reader must stop at the hello's end, not the stream's.
            Ok::<_, io::Error>(near)
        });
        let read = read_client_hello(&mut far).await.expect("a hello");
        assert_eq!(read.server_name.as_deref(), Some("api.example.com"));
        drop(sending.await.expect("joined").expect("sent"));
    }

    #[tokio::test]
    async fn plain_text_a_cut_hello_and_garbage_are_refused() {
        let not_tls = read_all_of(b"GET / HTTP/1.1\r\n\r\n".to_vec()).await;
        assert!(
            matches!(not_tls, Err(ClientHelloError::NotTls(b'G'))),
            "{not_tls:?}"
        );
        let hello = hello_for("example.com");
        let cut = read_all_of(hello[..hello.len() / 2].to_vec()).await;
        assert!(matches!(cut, Err(ClientHelloError::Closed(_))), "{cut:?}");
        let garbage = read_all_of(vec![0x16, 3, 1, 0, 4, 0xff, 0, 0, 0]).await;
        assert!(
            matches!(garbage, Err(ClientHelloError::Malformed(_))),
            "{garbage:?}"
        );
    }

    proptest::proptest! {
        /// Whatever a client sends, the reader answers or refuses, and never reads past
        /// its bound (a stranger's bytes are not buffered without end).
        #[test]
        fn any_first_bytes_are_read_or_refused_without_a_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
            handshake in proptest::prelude::any::<bool>(),
        ) {
            let mut bytes = bytes;
            if handshake && !bytes.is_empty() {
                bytes[0] = 0x16; // past the first check, into rustls's parser
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime");
            if let Ok(hello) = runtime.block_on(read_all_of(bytes.clone())) {
                proptest::prop_assert!(bytes.starts_with(&hello.bytes));
            }
        }

        /// A real hello with bytes changed: read (every byte kept) or refused, never a
        /// panic.
        #[test]
        fn a_damaged_hello_is_read_or_refused_without_a_panic(
            changes in proptest::collection::vec(
                (proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..6),
        ) {
            let mut bytes = hello_for("shop.example.com");
            for (at, value) in changes {
                let at = at % bytes.len();
                bytes[at] = value;
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime");
            if let Ok(hello) = runtime.block_on(read_all_of(bytes.clone())) {
                proptest::prop_assert!(bytes.starts_with(&hello.bytes));
            }
        }
    }

    /// A TLS 1.0 client's hello as OpenSSL sends one with `-tls1`: record version 3.1, no
    /// `signature_algorithms` (which TLS 1.2 requires and rustls's parser wants), asking for
    /// `name`; `extensions` false: none at all, as SSL 3.0's.
    fn old_hello(name: &str, extensions: bool) -> Vec<u8> {
        let mut body = vec![3, 1];
        body.extend([7u8; 32]); // random
        body.push(0); // no session id
        body.extend([0, 4, 0x00, 0x2f, 0x00, 0x35]); // two RSA suites
        body.extend([1, 0]); // null compression
        if extensions {
            let name = name.as_bytes();
            let name_len = u16::try_from(name.len()).expect("a short name");
            let mut list = vec![HOST_NAME];
            list.extend(name_len.to_be_bytes());
            list.extend(name);
            let mut sni = u16::try_from(list.len())
                .expect("short")
                .to_be_bytes()
                .to_vec();
            sni.extend(list);
            let mut all = vec![0xff, 0x01, 0, 1, 0]; // renegotiation_info first
            all.extend(SERVER_NAME.to_be_bytes());
            all.extend(u16::try_from(sni.len()).expect("short").to_be_bytes());
            all.extend(sni);
            body.extend(u16::try_from(all.len()).expect("short").to_be_bytes());
            body.extend(all);
        }
        let len = u32::try_from(body.len()).expect("short").to_be_bytes();
        let mut message = vec![CLIENT_HELLO, len[1], len[2], len[3]];
        message.extend(body);
        let mut record = vec![HANDSHAKE_RECORD, 3, 1];
        record.extend(u16::try_from(message.len()).expect("short").to_be_bytes());
        record.extend(message);
        record
    }

    #[tokio::test]
    async fn a_tls_1_0_hello_gives_its_name_and_one_without_extensions_none() {
        let hello = old_hello("B.example", true);
        let read = read_all_of(hello.clone()).await.expect("a hello");
        assert_eq!(read.server_name.as_deref(), Some("b.example"));
        assert_eq!(read.bytes, hello);
        let read = read_all_of(old_hello("", false)).await.expect("a hello");
        assert_eq!(read.server_name, None);
    }

    #[tokio::test]
    async fn a_hello_split_over_two_records_is_read_whole() {
        let hello = hello_for("split.example");
        let message = &hello[5..];
        let mut records = Vec::new();
        for part in [&message[..10], &message[10..]] {
            records.extend([HANDSHAKE_RECORD, 3, 3]);
            records.extend(u16::try_from(part.len()).expect("short").to_be_bytes());
            records.extend(part);
        }
        let read = read_all_of(records).await.expect("a hello");
        assert_eq!(read.server_name.as_deref(), Some("split.example"));
    }

    #[tokio::test]
    async fn a_hello_without_a_name() {
        // rustls sends no SNI for an address.
        let hello = hello_for("127.0.0.1");
        let read = read_all_of(hello).await.expect("a hello");
        assert_eq!(read.server_name, None);
    }
}
