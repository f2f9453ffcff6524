//! What an established TLS session is: for a server's handler that wants to know who its
//! client is (the protocol version, the name the client asked for, the application
//! protocol, and the client's certificate under mutual TLS, with its subject in RFC 4514
//! form, read with `x509-cert`, and its fingerprint), and as one line for a log on either
//! side ([`summary`], what `connect -v` and `listen -v` print).

use rustls::pki_types::CertificateDer;
use x509_cert::Certificate;
use x509_cert::der::Decode;

use super::fingerprint::Fingerprint;
use super::validity::Validity;

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
        TlsSession {
            version: version_name(session),
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

    /// The common name (CN) of the client certificate's subject, if it sent one that has
    /// one (the name HAProxy passes on in a PROXY v2 `PP2_SUBTYPE_SSL_CN`).
    pub fn client_common_name(&self) -> Option<String> {
        let der = self.client_certificate.as_ref()?;
        let cert = Certificate::from_der(der.as_ref()).ok()?;
        let name = cert.tbs_certificate().subject().common_name().ok()??;
        Some(name.into())
    }

    /// The SHA-256 fingerprint of the client's certificate, if it sent one.
    pub fn client_fingerprint(&self) -> Option<Fingerprint> {
        self.client_certificate
            .as_ref()
            .map(|der| Fingerprint::of(der.as_ref()))
    }
}

/// One line on an established session, for a log: version and cipher suite, the
/// application protocol, and the peer's certificate (subject, issuer, end of validity,
/// fingerprint) if it sent one.
///
/// `TLSv1.3 TLS13_AES_256_GCM_SHA384, ALPN h2; certificate CN=localhost issued by
/// CN=Example CA, valid until 2027-01-04T21:23:35Z, SHA-256 AB:CD:…`
pub fn summary(session: &rustls::CommonState) -> String {
    let mut line = version_name(session).to_owned();
    if let Some(suite) = session.negotiated_cipher_suite() {
        line.push(' ');
        line.push_str(
            suite
                .suite()
                .as_str()
                .unwrap_or("(an unnamed cipher suite)"),
        );
    }
    if let Some(alpn) = session.alpn_protocol() {
        line.push_str(", ALPN ");
        line.push_str(&String::from_utf8_lossy(alpn));
    }
    match session.peer_certificates().and_then(|chain| chain.first()) {
        Some(cert) => {
            line.push_str("; certificate ");
            line.push_str(&certificate_summary(cert));
        }
        None => line.push_str("; no certificate from the peer"),
    }
    line
}

/// The protocol version of an established session, as OpenSSL names it (rustls speaks
/// only these two).
fn version_name(session: &rustls::CommonState) -> &'static str {
    match session.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLSv1.3",
    }
}

/// A certificate in a few words: subject, issuer, end of validity, fingerprint.
fn certificate_summary(der: &CertificateDer<'_>) -> String {
    let fingerprint = Fingerprint::of(der.as_ref());
    let Ok(cert) = Certificate::from_der(der.as_ref()) else {
        return format!("(not X.509 that parses), SHA-256 {fingerprint}");
    };
    let tbs = cert.tbs_certificate();
    let until = humantime::format_rfc3339_seconds(Validity::of_parsed(&cert).not_after);
    format!(
        "{} issued by {}, valid until {until}, SHA-256 {fingerprint}",
        tbs.subject(),
        tbs.issuer()
    )
}
