//! Discard, [RFC 863](https://www.rfc-editor.org/rfc/rfc863): read and drop everything until
//! the client closes; datagrams are dropped without an answer.

use std::io;

use super::buffers;
use crate::server::{Connection, DatagramHandler, Handler, Reply};
use crate::socket::Address;

/// The discard service.
#[derive(Debug, Clone, Copy, Default)]
pub struct Discard;

impl Handler for Discard {
    fn call(&self, conn: Connection) -> impl Future<Output = io::Result<()>> + Send + 'static {
        discard(conn)
    }
}

async fn discard(mut conn: Connection) -> io::Result<()> {
    loop {
        conn.readable().await?;
        let mut buf = buffers::take();
        loop {
            match conn.try_read(&mut buf) {
                Ok(0) => {
                    buffers::give(buf);
                    return Ok(());
                }
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => return Err(err),
            }
        }
        buffers::give(buf);
    }
}

impl DatagramHandler for Discard {
    fn datagram(&self, _payload: &[u8], _peer: &Address, _reply: &mut Reply) -> io::Result<()> {
        Ok(())
    }
}
