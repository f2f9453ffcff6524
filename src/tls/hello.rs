//! A TLS client's first message, its ClientHello, read off a connection that is not ours to
//! terminate: a relay that routes by the server name the client asks for (SNI, as HAProxy's
//! `req.ssl_sni` and nginx's `ssl_preread` do) reads the hello, chooses a target, and
//! passes the very bytes it read on before relaying the rest. rustls's `Acceptor` parses
//! it, so a hello split over several records or segments is read whole and a malformed one
//! is refused as rustls would refuse it.

use std::io;

use rustls::server::Acceptor;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The most a ClientHello may take, its records' headers included; a handshake message
/// can say it is up to 16 MiB long, and a relay must not buffer that for a stranger. Real
/// ones are under 2 KiB, a few KiB with post-quantum key shares.
pub const MAX_CLIENT_HELLO: usize = 64 * 1024;

/// What a client's ClientHello asked for, and the bytes it came in.
#[derive(Debug, Clone)]
pub struct ClientHello {
    /// Every byte read from the client so far, to be sent on first.
    pub bytes: Vec<u8>,
    /// The server name the client asked for (SNI), if it asked for one.
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
    /// rustls could not read the hello.
    #[error("the client's ClientHello is malformed: {0}")]
    Malformed(String),
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
    let mut acceptor = Acceptor::default();
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = client.read(&mut chunk).await?;
        if read == 0 {
            return Err(ClientHelloError::Closed(bytes.len()));
        }
        if bytes.is_empty() && chunk[0] != 0x16 {
            return Err(ClientHelloError::NotTls(chunk[0]));
        }
        if bytes.len() + read > MAX_CLIENT_HELLO {
            return Err(ClientHelloError::TooLong);
        }
        bytes.extend_from_slice(&chunk[..read]);
        let mut rest = &chunk[..read];
        while !rest.is_empty() {
            // An empty reader would read as the end of the stream: only called with bytes.
            let took = acceptor
                .read_tls(&mut rest)
                .map_err(|err| ClientHelloError::Malformed(err.to_string()))?;
            if took == 0 {
                return Err(ClientHelloError::TooLong);
            }
        }
        match acceptor.accept() {
            Ok(None) => {}
            Ok(Some(accepted)) => {
                let server_name = accepted.client_hello().server_name().map(str::to_owned);
                return Ok(ClientHello { bytes, server_name });
            }
            Err((err, _alert)) => return Err(ClientHelloError::Malformed(err.to_string())),
        }
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

    #[tokio::test]
    async fn a_hello_without_a_name() {
        // rustls sends no SNI for an address.
        let hello = hello_for("127.0.0.1");
        let read = read_all_of(hello).await.expect("a hello");
        assert_eq!(read.server_name, None);
    }
}
