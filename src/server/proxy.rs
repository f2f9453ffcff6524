//! The PROXY protocol stage (SPEC §3.3): the first admission stage of a server behind a load
//! balancer. It takes the balancer's header off the connection and makes the client it names
//! the connection's peer, for every stage after it, the handler, the logs and the metrics.
//!
//! The header is read without ever taking a byte of the service's: the stage peeks
//! (`MSG_PEEK`) at what has arrived and asks [`crate::proxy_protocol::parse()`] about it.
//! While the header is incomplete, every byte seen belongs to it, so those bytes are taken
//! off the socket and the stage waits for more; once it is complete, exactly its length is
//! taken.
//! What the client sent after the header stays in the socket for the service.
//!
//! A server whose handler has an immediate reply first tries the header on the accept loop
//! ([`ProxyStage::try_now`]): one peek that does not wait. When the whole header is already
//! there, the connection is answered on the spot as it would be without PROXY; anything
//! else goes to the connection's task and the stage above, as if the try had not been.

use std::time::Duration;

use super::{Admission, Admit, Admitted, Connection, Refusal, RefusalReason};
use crate::access::CidrSet;
use crate::net::RawStream;
use crate::proxy_protocol::{Gather, ProxyHeader, Seen, Tlvs, v2_tlvs};
use crate::socket::Address;

/// Expects a PROXY header from trusted sources (see [`super::Builder::proxy_protocol`]).
pub(crate) struct ProxyStage {
    trusted: CidrSet,
    timeout: Duration,
}

impl ProxyStage {
    pub(crate) fn new(trusted: CidrSet, timeout: Duration) -> ProxyStage {
        ProxyStage { trusted, timeout }
    }

    /// How long a client has to send its whole header.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether `peer` may send a header — an address of the trusted networks, or a client
    /// of a Unix socket (local; the socket file's permissions decide who connects) — or
    /// the stage's refusal.
    pub(crate) fn check_trust(&self, peer: &Address) -> Result<(), Refusal> {
        let trusted = match peer.ip() {
            Some(ip) => self.trusted.contains(ip),
            None => true,
        };
        if trusted {
            Ok(())
        } else {
            Err(refusal("not a trusted proxy"))
        }
    }
}

/// What one try on the accept loop found (see [`ProxyStage::try_now`]).
pub(crate) enum Now {
    /// A whole header, taken off the socket: `len` bytes, naming `peer` (`None`: a `LOCAL`
    /// header, the connection's own peer stands).
    Header { peer: Option<Address>, len: usize },
    /// Refused, as the stage would refuse it.
    Refused(Refusal),
    /// Not decided without waiting (nothing yet, a partial header, end of stream, an
    /// error): nothing was taken, and the stage must run in the connection's task.
    Later,
}

impl ProxyStage {
    /// Tries the stage on a connection just accepted, without waiting: the peer's trust,
    /// then one non-blocking peek. Only a complete, valid header is taken off the socket —
    /// exactly its bytes — and only a decision the stage would make the same way (an
    /// untrusted source, bytes that cannot begin a header) is a refusal.
    pub(crate) fn try_now(&self, raw: &RawStream) -> Now {
        if let Err(refused) = self.check_trust(&raw.peer()) {
            return Now::Refused(refused);
        }
        let mut gather = Gather::new();
        let seen = match raw.peek_now(gather.room()) {
            Ok(seen) if seen > 0 => seen,
            _ => return Now::Later,
        };
        match gather.seen(seen) {
            Ok((Seen::Complete(header), bytes)) => {
                // The peek showed these bytes are there, so one receive takes them all.
                let len = bytes.len();
                match raw.take_now(bytes) {
                    Ok(n) if n == len => {}
                    _ => return Now::Refused(refusal("reading the header: cut short")),
                }
                Now::Header {
                    peer: header.client(),
                    len,
                }
            }
            // Nothing is taken: the connection's task starts the header over.
            Ok((Seen::More, _)) => Now::Later,
            Err(err) => Now::Refused(refusal(err.to_string())),
        }
    }
}

impl Admission for ProxyStage {
    fn reason(&self) -> RefusalReason {
        RefusalReason::Proxy
    }

    fn deadline(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    fn admit<'a>(&'a self, conn: &'a mut Connection) -> Admit<'a> {
        Box::pin(async move {
            self.check_trust(conn.peer_addr())?;
            let (header, tlvs) = read_header(conn).await?;
            if let Some(client) = header.client() {
                conn.set_peer_addr(client);
            }
            if let ProxyHeader::Proxied { destination, .. } = header {
                conn.meter_mut().set_destination(destination);
            }
            if let Some(tlvs) = tlvs {
                conn.meter_mut().set_told(tlvs);
            }
            Ok(Admitted::new())
        })
    }
}

/// Takes one PROXY header off `conn` and not a byte more: what it says, and the TLVs of a
/// v2 header.
async fn read_header(conn: &mut Connection) -> Result<(ProxyHeader, Option<Tlvs>), Refusal> {
    let mut gather = Gather::new();
    loop {
        let seen = conn.peek(gather.room()).await.map_err(|err| {
            refusal(format!(
                "reading the header: {}",
                crate::error::describe(&err)
            ))
        })?;
        if seen == 0 {
            return Err(refusal("the connection ended before a complete header"));
        }
        let (seen, header_bytes) = gather.seen(seen).map_err(|err| refusal(err.to_string()))?;
        consume(conn, header_bytes).await?;
        if let Seen::Complete(header) = seen {
            let taken = gather.taken();
            // Counted once every stage has admitted the connection, as the io_uring
            // engine counts it: a refused connection's header is no byte received.
            conn.meter_mut().received_if_admitted(taken.len());
            return Ok((header, v2_tlvs(taken)));
        }
    }
}

/// Takes `buf.len()` bytes off the socket that a peek has shown are there (counted by
/// the caller once the header is whole).
async fn consume(conn: &mut Connection, buf: &mut [u8]) -> Result<(), Refusal> {
    conn.take_peeked(buf).await.map_err(|err| {
        refusal(format!(
            "reading the header: {}",
            crate::error::describe(&err)
        ))
    })
}

/// A refusal by the PROXY stage, for `detail`.
pub(crate) fn refusal(detail: impl Into<std::borrow::Cow<'static, str>>) -> Refusal {
    Refusal::new(RefusalReason::Proxy, detail)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::access::parse_network;
    use crate::server::Server;

    /// Serves a stage-guarded server that records each admitted connection's peer and the
    /// bytes its handler read; returns its address, the records and the refusals.
    async fn server(
        trusted: &str,
    ) -> (
        SocketAddr,
        Arc<Mutex<Vec<(String, Vec<u8>)>>>,
        crate::server::Refusals,
        crate::server::ShutdownHandle,
    ) {
        let mut builder = Server::builder();
        builder
            .listen("127.0.0.1:0".parse().expect("endpoint"))
            .proxy_protocol(
                [parse_network(trusted).expect("network")]
                    .into_iter()
                    .collect(),
                Duration::from_millis(300),
            );
        let server = builder.bind().await.expect("bind");
        let addr = server.local_endpoints()[0]
            .to_string()
            .trim_start_matches("tcp:")
            .parse()
            .expect("address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (refusals, shutdown) = (server.refusals(), server.shutdown_handle());
        let record = Arc::clone(&seen);
        tokio::spawn(server.serve(move |mut conn: Connection| {
            let record = Arc::clone(&record);
            async move {
                let mut got = Vec::new();
                conn.read_to_end(&mut got).await?;
                let peer = conn.peer_addr().to_string();
                record.lock().expect("not poisoned").push((peer, got));
                Ok(())
            }
        }));
        (addr, seen, refusals, shutdown)
    }

    async fn send(addr: SocketAddr, pieces: &[&[u8]]) {
        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        for piece in pieces {
            if client.write_all(piece).await.is_err() {
                return; // refused and reset: fine for the tests that expect it
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let _ = client.shutdown().await;
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest).await;
    }

    #[tokio::test]
    async fn header_bytes_are_taken_and_the_service_gets_the_rest_even_one_byte_at_a_time() {
        let (addr, seen, refusals, shutdown) = server("127.0.0.0/8").await;
        let v1 = b"PROXY TCP4 192.0.2.9 192.0.2.1 5000 80\r\nhello";
        let bytes: Vec<&[u8]> = v1.chunks(1).collect();
        send(addr, &bytes).await;
        let v2 = crate::proxy_protocol::encode_v2(
            "[2001:db8::5]:6000".parse().expect("addr"),
            "[2001:db8::1]:443".parse().expect("addr"),
        );
        send(addr, &[&[v2.as_slice(), b"world"].concat()]).await;
        // A v2 header with 600 bytes of TLVs: longer than the inline room.
        let mut long = crate::proxy_protocol::encode_v2(
            "192.0.2.44:7000".parse().expect("addr"),
            "192.0.2.1:443".parse().expect("addr"),
        );
        let body = u16::from_be_bytes([long[14], long[15]]) + 603;
        long[14..16].copy_from_slice(&body.to_be_bytes());
        long.extend_from_slice(&[0xEE, 0x02, 0x58]);
        long.extend_from_slice(&[7; 600]);
        send(addr, &[&long[..100], &long[100..], b"tlv"]).await;
        let mut local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
        local.extend_from_slice(b"check");
        send(addr, &[&local]).await;
        shutdown.shutdown();
        let seen = seen.lock().expect("not poisoned").clone();
        assert_eq!(
            seen,
            [
                ("192.0.2.9:5000".to_owned(), b"hello".to_vec()),
                ("[2001:db8::5]:6000".to_owned(), b"world".to_vec()),
                ("192.0.2.44:7000".to_owned(), b"tlv".to_vec()),
                (seen[3].0.clone(), b"check".to_vec()),
            ]
        );
        assert!(seen[3].0.starts_with("127.0.0.1:"), "LOCAL keeps the proxy");
        assert_eq!(refusals.total(), 0);
    }

    #[tokio::test]
    async fn untrusted_missing_garbage_oversized_and_late_headers_are_refused() {
        let (addr, seen, refusals, shutdown) = server("10.0.0.0/8").await;
        send(addr, &[b"PROXY TCP4 192.0.2.9 192.0.2.1 5000 80\r\nx"]).await;
        shutdown.shutdown();
        let (addr, seen2, refusals2, shutdown2) = server("127.0.0.1").await;
        send(addr, &[b"GET / HTTP/1.1\r\n\r\n"]).await;
        send(addr, &[b"\x00\x01\x02garbage"]).await;
        let mut huge = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
        huge.extend_from_slice(&60_000u16.to_be_bytes());
        huge.extend_from_slice(&[0; 64]);
        send(addr, &[&huge]).await;
        // Half a header, then nothing until the deadline has passed.
        let mut late = tokio::net::TcpStream::connect(addr).await.expect("connect");
        late.write_all(b"PROXY TCP4 192.0.2.9").await.expect("send");
        let mut rest = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(3), late.read_to_end(&mut rest)).await;
        assert!(ended.is_ok(), "closed at the deadline");
        shutdown2.shutdown();
        assert!(seen.lock().expect("not poisoned").is_empty());
        assert!(seen2.lock().expect("not poisoned").is_empty());
        assert_eq!(refusals.get(RefusalReason::Proxy), 1);
        assert_eq!(refusals2.get(RefusalReason::Proxy), 4);
    }
}
