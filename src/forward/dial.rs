//! Reaching a relay's target: the connection (directly or through a proxy), a PROXY header,
//! and a `tls:` target's handshake, all under one timeout. Clients' connections and the
//! health checks ([`super::checks`]) are made the same way.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::client::proxy::Proxy;
use crate::endpoint::Endpoint;
use crate::net;
use crate::tls::Connector;

use super::relay::Upstream;

/// How a relay connects to its targets.
#[derive(Debug, Clone, Default)]
pub(crate) struct Dialer {
    /// Bounds each attempt, handshakes included.
    pub(crate) timeout: Option<Duration>,
    /// Makes the `tls:` targets' handshakes.
    pub(crate) tls: Option<Connector>,
    /// Shared: a relay is cloned for every connection.
    pub(crate) proxy: Option<Arc<Proxy>>,
}

impl Dialer {
    /// The connection to `target`, with `header` (a PROXY header) sent first, then
    /// through the TLS handshake for a `tls:` target — offering `alpn` when given (see
    /// `Connector::connect_offering`); the timeout bounds the whole of it.
    pub(crate) async fn connect(
        &self,
        target: &Endpoint,
        header: Option<&[u8]>,
        alpn: Option<&[Vec<u8>]>,
    ) -> io::Result<Upstream> {
        let attempt = async {
            let mut stream = match &self.proxy {
                Some(proxy) => proxy.open(target).await?,
                None => net::connect_stream(target, None).await?,
            };
            if let Some(header) = header {
                stream.write_all(header).await?;
            }
            match (target, &self.tls) {
                (Endpoint::Tls(hp), Some(connector)) => {
                    let tls = connector.connect_offering(&hp.host, stream, alpn).await?;
                    // A target may ignore ALPN rather than refuse (OpenSSL's servers do): one
                    // that agreed on no protocol, or another, while the client agreed on one,
                    // would be sent bytes of a protocol it does not speak.
                    if let Some([wanted]) = alpn
                        && tls.get_ref().1.alpn_protocol() != Some(wanted.as_slice())
                    {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "the target agreed on no application protocol (ALPN) where the \
                                 client agreed on {}",
                                String::from_utf8_lossy(wanted)
                            ),
                        ));
                    }
                    Ok(Upstream::Tls(Box::new(tls)))
                }
                _ => Ok(Upstream::Plain(stream)),
            }
        };
        net::within(self.timeout, attempt).await
    }

    /// ` through PROXY` for a log line, or nothing.
    pub(crate) fn through(&self) -> String {
        match &self.proxy {
            Some(proxy) => format!(" through {proxy}"),
            None => String::new(),
        }
    }
}
