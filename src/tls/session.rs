//! What an established server-side TLS session is, for a handler that wants to know who its
//! client is: the protocol version, the name the client asked for (SNI), the application
//! protocol (ALPN), and the client's certificate under mutual TLS, with its subject (RFC
//! 4514, read with `x509-cert`) and fingerprint.

use rustls::pki_types::CertificateDer;
use x509_cert::Certificate;
use x509_cert::der::Decode;

use super::fingerprint::Fingerprint;

/// An established TLS session, as a server sees it.
#[derive(Debug, Clone)]
pub struct TlsSession {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: &'static str,
    /// The name the client asked for (SNI), if it asked for one.
    pub server_name: Option<String>,
    /// The application protocol agreed on (ALPN), if any.
    pub alpn: Option<Vec<u8>>,
    /// The client's certificate (mutual TLS), as the handshake verified it.
    pub client_certificate: Option<CertificateDer<'static>>,
}

impl TlsSession {
    /// What `session` is.
    pub fn of(session: &rustls::ServerConnection) -> TlsSession {
        let version = match session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLSv1.3",
        };
        TlsSession {
            version,
            server_name: session.server_name().map(str::to_owned),
            alpn: session.alpn_protocol().map(<[u8]>::to_vec),
            client_certificate: session
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|cert| cert.clone().into_owned()),
        }
    }

    /// The subject of the client's certificate as RFC 4514 writes it (`CN=alice,O=Example`),
    /// if it sent one that parses.
    pub fn client_subject(&self) -> Option<String> {
        let der = self.client_certificate.as_ref()?;
        let cert = Certificate::from_der(der.as_ref()).ok()?;
        Some(cert.tbs_certificate().subject().to_string())
    }

    /// The SHA-256 fingerprint of the client's certificate, if it sent one.
    pub fn client_fingerprint(&self) -> Option<Fingerprint> {
        self.client_certificate
            .as_ref()
            .map(|der| Fingerprint::of(der.as_ref()))
    }
}
