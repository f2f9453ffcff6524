//! Echo, [RFC 862](https://www.rfc-editor.org/rfc/rfc862): send back every byte until the
//! client closes; each UDP datagram is answered unchanged.
//!
//! Half-close is honoured: when the client shuts down its side, everything it sent is echoed
//! and then the server shuts down its own. The echo never buffers without bound: it writes
//! each chunk before reading the next, so a client that does not read its echoes stops the
//! server from reading, and TCP flow control holds the client back.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::server::{Connection, DatagramHandler, Handler, Reply};
use crate::socket::Address;

/// The buffer of one echoing connection, allocated when its first bytes arrive.
pub(crate) const BUFFER: usize = 16 * 1024;

/// The echo service.
///
/// # Examples
///
/// ```
/// use socketkit::server::{DatagramHandler, Reply};
/// use socketkit::services::echo::Echo;
///
/// let mut reply = Reply::default();
/// let peer = socketkit::socket::Address::unix("/tmp/client.sock");
/// Echo.datagram(b"ping", &peer, &mut reply)?;
/// assert_eq!(reply.len(), 1);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl Handler for Echo {
    fn call(&self, conn: Connection) -> impl Future<Output = io::Result<()>> + Send + 'static {
        echo(conn)
    }
}

async fn echo(mut conn: Connection) -> io::Result<()> {
    conn.readable().await?;
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return conn.shutdown().await;
        }
        conn.write_all(&buf[..n]).await?;
    }
}

impl DatagramHandler for Echo {
    fn datagram(&self, payload: &[u8], _peer: &Address, reply: &mut Reply) -> io::Result<()> {
        reply.send(payload);
        Ok(())
    }
}
