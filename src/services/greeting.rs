//! The tutorial's service: send a fixed message (default `你好`, UTF-8, no newline) to each
//! client, then close. Over UDP, the message answers each datagram.

use std::borrow::Cow;
use std::io;
use std::sync::Arc;

use crate::server::{Connection, DatagramHandler, Handler, Reply};
use crate::socket::Address;

/// The message the tutorial's server sends.
pub const DEFAULT_MESSAGE: &str = "你好";

/// A handler that writes `message` and closes.
///
/// # Examples
///
/// ```
/// use socketkit::services::greeting::Greeting;
/// let hello = Greeting::new("hello\n");
/// assert_eq!(hello.message(), b"hello\n");
/// ```
#[derive(Debug, Clone)]
pub struct Greeting {
    message: Arc<[u8]>,
}

impl Greeting {
    /// A greeting of `message`.
    pub fn new(message: impl AsRef<[u8]>) -> Greeting {
        Greeting {
            message: Arc::from(message.as_ref()),
        }
    }

    /// The bytes each client receives.
    pub fn message(&self) -> &[u8] {
        &self.message
    }
}

impl Default for Greeting {
    fn default() -> Greeting {
        Greeting::new(DEFAULT_MESSAGE)
    }
}

impl Handler for Greeting {
    fn call(&self, conn: Connection) -> impl Future<Output = io::Result<()>> + Send + 'static {
        super::answer_and_close(conn, Arc::clone(&self.message))
    }

    fn immediate_reply(&self) -> Option<Cow<'_, [u8]>> {
        Some(Cow::Borrowed(&self.message))
    }
}

impl DatagramHandler for Greeting {
    fn datagram(&self, _payload: &[u8], _peer: &Address, reply: &mut Reply) -> io::Result<()> {
        reply.send(&self.message);
        Ok(())
    }
}
