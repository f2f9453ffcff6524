//! The shape of greeting, daytime, qotd and time: one answer computed per client, then the
//! connection closes. Each declares that answer once, as an [`Answer`];
//! [`answer_service!`] derives from it the three ways a server uses it: the immediate reply
//! its accept loop sends ([`Handler::immediate_reply`](crate::server::Handler)), the
//! handler that writes it and closes, and the reply to each datagram.

use std::borrow::Cow;
use std::io;

use tokio::io::AsyncWriteExt;

use crate::server::Connection;

/// A service whose whole job is one answer per client (a connection or a datagram).
pub(crate) trait Answer {
    /// The answer for one client, as cheap as the service can make it: borrowed from the
    /// service, or a small value of its own. It becomes a `Cow` only for the accept loop's
    /// immediate reply, and is read in place for a datagram.
    fn answer(&self) -> impl AsRef<[u8]> + Into<Cow<'_, [u8]>>;
}

/// The answer over a stream: write it, then close our side so the client reads end of
/// stream.
pub(crate) async fn answer_and_close(mut conn: Connection, answer: Vec<u8>) -> io::Result<()> {
    conn.write_all(&answer).await?;
    conn.shutdown().await
}

/// Implements `Handler` and `DatagramHandler` for an [`Answer`] type.
macro_rules! answer_service {
    ($service:ty) => {
        impl $crate::server::Handler for $service {
            fn call(
                &self,
                conn: $crate::server::Connection,
            ) -> impl ::std::future::Future<Output = ::std::io::Result<()>> + Send + 'static {
                let answer = $crate::services::answer::Answer::answer(self);
                $crate::services::answer::answer_and_close(conn, answer.as_ref().to_vec())
            }

            fn immediate_reply(&self) -> Option<::std::borrow::Cow<'_, [u8]>> {
                Some($crate::services::answer::Answer::answer(self).into())
            }

            // Without computing an answer: qotd's turn would move on.
            fn replies_immediately(&self) -> bool {
                true
            }
        }

        impl $crate::server::DatagramHandler for $service {
            fn datagram(
                &self,
                _payload: &[u8],
                peer: &$crate::socket::Address,
                reply: &mut $crate::server::Reply,
            ) -> ::std::io::Result<()> {
                if $crate::services::answers_datagram_from(peer) {
                    reply.send($crate::services::answer::Answer::answer(self).as_ref());
                }
                Ok(())
            }
        }
    };
}

pub(crate) use answer_service;
