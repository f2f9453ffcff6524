//! Discard, [RFC 863](https://www.rfc-editor.org/rfc/rfc863): read and drop everything until
//! the client closes; datagrams are dropped without an answer.

use std::io;

use super::buffers;
use crate::server::{Connection, DatagramHandler, Handler, Reply, Routine};
use crate::socket::Address;

/// The discard service.
#[derive(Debug, Clone, Copy, Default)]
pub struct Discard;

impl Handler for Discard {
    fn call(&self, conn: Connection) -> impl Future<Output = io::Result<()>> + Send + 'static {
        buffers::consume(conn, buffers::Bytes::Drop)
    }

    fn routine(&self) -> Option<Routine> {
        Some(Routine::Discard)
    }
}

impl DatagramHandler for Discard {
    fn datagram(&self, _payload: &[u8], _peer: &Address, _reply: &mut Reply) -> io::Result<()> {
        Ok(())
    }
}
