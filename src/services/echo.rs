//! Echo, [RFC 862](https://www.rfc-editor.org/rfc/rfc862): send back every byte until the
//! client closes; each UDP datagram is answered unchanged.
//!
//! Half-close is honoured: when the client shuts down its side, everything it sent is echoed
//! and then the server shuts down its own. The echo never buffers without bound: it writes
//! each chunk before reading the next, so a client that does not read its echoes stops the
//! server from reading, and TCP flow control holds the client back. A connection holds a
//! read buffer only while bytes are moving (see `buffers`), so idle ones cost almost nothing.

use std::io;

use super::buffers;

use crate::server::{Connection, DatagramHandler, Handler, Reply, Routine};
use crate::socket::Address;

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
        buffers::consume(conn, buffers::Bytes::Echo)
    }

    fn routine(&self) -> Option<Routine> {
        Some(Routine::Echo)
    }
}

impl DatagramHandler for Echo {
    fn datagram(&self, payload: &[u8], peer: &Address, reply: &mut Reply) -> io::Result<()> {
        if super::answers_datagram_from(peer) {
            reply.send(payload);
        }
        Ok(())
    }
}
