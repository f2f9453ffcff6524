//! The client side: a `rustls::ClientConfig` that verifies servers against the system's CA
//! store or a given CA file, or accepts exactly the certificate of a pinned fingerprint (or,
//! on request, any), and a [`Connector`] that runs the handshake over any async stream with
//! the right server name.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls13_signature_with_raw_key,
};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, PeerMisbehaved,
    RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite};
use x509_cert::der::{Decode, Encode, EncodeValue};

use super::fingerprint::{Fingerprint, NotPinned};
use super::server::{Identity, identity_error, root_store};
use super::{describe, pem, provider};
use crate::endpoint::Host;
use crate::error::{Error, Op, Result};

/// How a client verifies servers and presents itself.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Trust only the CA certificates in this PEM file; without it, the system's store
    /// (`/etc/ssl/certs`, or `SSL_CERT_FILE` / `SSL_CERT_DIR`).
    pub ca: Option<PathBuf>,
    /// Accept any server certificate. The handshake still proves the server holds the key of
    /// the certificate it sent, but nothing says whose certificate that is.
    pub insecure: bool,
    /// Accept exactly the server certificate with this SHA-256 fingerprint (a self-signed
    /// server's, say), whatever its issuer, names and dates; `ca` and `insecure` are then
    /// not used. The handshake proves the server holds that certificate's key.
    pub pin: Option<Fingerprint>,
    /// Application protocols (ALPN) to offer, in order of preference.
    pub alpn: Vec<Vec<u8>>,
    /// A client certificate chain and its key, for servers that ask for one.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Never resume a session: every connection makes a full handshake (what a benchmark of
    /// handshakes measures).
    pub full_handshakes: bool,
}

/// Builds a client configuration from `options`.
///
/// # Errors
///
/// A CA, certificate or key file that cannot be read or is not what it should be; a system
/// store with no certificate in it.
///
/// # Examples
///
/// ```
/// use socketkit::tls::{ClientOptions, client_config};
/// let options = ClientOptions { insecure: true, ..ClientOptions::default() };
/// let config = client_config(&options)?;
/// assert!(config.alpn_protocols.is_empty());
/// # Ok::<(), socketkit::Error>(())
/// ```
pub fn client_config(options: &ClientOptions) -> Result<Arc<ClientConfig>> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| {
            Error::without_target(
                Op::Load("TLS configuration"),
                io::Error::other(describe(&err)),
            )
        })?;
    let builder = if options.pin.is_some() || options.insecure {
        let verifier = WithoutCa {
            pin: options.pin,
            provider: provider(),
        };
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
    } else {
        let roots = match &options.ca {
            Some(path) => root_store(path)?,
            None => system_roots()?,
        };
        builder.with_root_certificates(roots)
    };
    let mut config = match &options.identity {
        Some((cert, key)) => {
            let chain = pem::load_certificates(cert)?;
            let private = pem::load_private_key(key)?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|err| {
                    let identity = Identity::Files {
                        cert: cert.clone(),
                        key: key.clone(),
                    };
                    identity_error(&identity, &err)
                })?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols.clone_from(&options.alpn);
    if options.full_handshakes {
        config.resumption = Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// The system's trusted CA certificates.
fn system_roots() -> Result<Arc<RootCertStore>> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let reason = match found.errors.first() {
            Some(err) => format!("no CA certificate could be read ({err})"),
            None => "no CA certificate found (is ca-certificates installed?)".to_owned(),
        };
        return Err(Error::new(
            Op::Load("TLS CA certificates"),
            "of the system",
            io::Error::new(io::ErrorKind::NotFound, reason),
        ));
    }
    Ok(Arc::new(roots))
}

/// Runs client handshakes: a configuration, and the server name to ask for when it is not
/// the host connected to.
///
/// # Examples
///
/// ```
/// use socketkit::tls::{ClientOptions, Connector, client_config};
/// let config = client_config(&ClientOptions { insecure: true, ..Default::default() })?;
/// let connector = Connector::new(config).with_server_name("example.com").unwrap();
/// let name = connector.server_name(&socketkit::endpoint::Host::Any).unwrap();
/// assert_eq!(name.to_str(), "example.com");
/// # Ok::<(), socketkit::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Connector {
    /// Shared by the connector's clones, so that [`Connector::replace_config`] reaches
    /// every one of them (a relay is cloned for each connection).
    config: Arc<ArcSwap<ClientConfig>>,
    server_name: Option<ServerName<'static>>,
}

impl Connector {
    /// A connector with `config` that asks each server for the host it connects to.
    pub fn new(config: Arc<ClientConfig>) -> Connector {
        Connector {
            config: Arc::new(ArcSwap::new(config)),
            server_name: None,
        }
    }

    /// Puts `config` in force for the handshakes that start from now on, in this connector
    /// and every clone of it (a renewed client certificate, new CAs); sessions already made
    /// keep theirs.
    pub fn replace_config(&self, config: Arc<ClientConfig>) {
        self.config.store(config);
    }

    /// Asks for `name` (SNI) and verifies the certificate against it, whatever host the
    /// connection goes to.
    ///
    /// # Errors
    ///
    /// `name` is neither a DNS name nor an IP address.
    pub fn with_server_name(mut self, name: &str) -> io::Result<Connector> {
        self.server_name = Some(parse_name(name)?);
        Ok(self)
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.load_full()
    }

    /// The name asked for on a connection to `host`: the one given to
    /// [`Connector::with_server_name`], or the host itself.
    ///
    /// # Errors
    ///
    /// `host` is empty (`tls::443`) and no name was given.
    pub fn server_name(&self, host: &Host) -> io::Result<ServerName<'static>> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        match host {
            Host::Ip(ip) => Ok(ServerName::IpAddress((*ip).into())),
            Host::Name(name) => parse_name(name),
            Host::Any => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a host is needed to name the TLS server",
            )),
        }
    }

    /// Runs the handshake over `io` to `host`. Errors are in words: `certificate has
    /// expired: …`, `the peer does not speak TLS …`.
    ///
    /// # Errors
    ///
    /// The handshake failed, or `io` did.
    pub async fn connect<IO>(
        &self,
        host: &Host,
        io: IO,
    ) -> io::Result<tokio_rustls::client::TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.connect_offering(host, io, None).await
    }

    /// As [`Connector::connect`], offering the application protocols `alpn` (none, when
    /// empty) instead of the configuration's, when given: a relay between two TLS sessions
    /// offers its target the protocol its client agreed on, so that both speak the same.
    ///
    /// # Errors
    ///
    /// As [`Connector::connect`]; a server that takes none of `alpn` refuses the handshake.
    pub async fn connect_offering<IO>(
        &self,
        host: &Host,
        io: IO,
        alpn: Option<&[Vec<u8>]>,
    ) -> io::Result<tokio_rustls::client::TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let name = self.server_name(host)?;
        let mut config = self.config.load_full();
        if let Some(alpn) = alpn.filter(|alpn| *alpn != config.alpn_protocols.as_slice()) {
            // A copy for this handshake: its parts (the roots, the session cache) are shared.
            let mut offering = ClientConfig::clone(&config);
            offering.alpn_protocols = alpn.to_vec();
            config = Arc::new(offering);
        }
        tokio_rustls::TlsConnector::from(config)
            .connect(name, io)
            .await
            .map_err(describe::handshake_failure)
    }
}

fn parse_name(name: &str) -> io::Result<ServerName<'static>> {
    ServerName::try_from(name.to_owned()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{name}' is not a valid TLS server name"),
        )
    })
}

/// The verifier without a CA: the certificate of `pin`, or with no pin (`insecure`) any
/// certificate, is taken; handshake signatures are still checked, so the peer must hold
/// the key of the certificate it sent.
#[derive(Debug)]
struct WithoutCa {
    pin: Option<Fingerprint>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for WithoutCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(pinned) = self.pin else {
            return Ok(ServerCertVerified::assertion());
        };
        let presented = Fingerprint::of(end_entity);
        if presented == pinned {
            return Ok(ServerCertVerified::assertion());
        }
        let mismatch = NotPinned { presented, pinned };
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(mismatch)),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_with_its_key(message, cert, dss, algorithms, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_with_its_key(message, cert, dss, algorithms, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Checks a handshake signature (`dss` over `message`) with the public key of `cert`, and
/// nothing else of it: the verifier without a CA took the certificate as it is, and
/// rustls's own check parses it with webpki first, which refuses an X.509 v1 certificate
/// or one with a critical extension it does not know — ones `curl -k` and `openssl
/// s_client` take, and that a pin names by their bytes alone. TLS 1.3 has rustls's check of
/// a raw public key; for TLS 1.2 the key's algorithm must be one the signature scheme's
/// algorithms expect, as webpki's check has it.
fn verify_with_its_key(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algorithms: &WebPkiSupportedAlgorithms,
    tls13: bool,
) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
    let invalid = rustls::Error::InvalidCertificate;
    let encoding = |_| invalid(CertificateError::BadEncoding);
    let parsed = x509_cert::Certificate::from_der(cert.as_ref()).map_err(encoding)?;
    let key = parsed.tbs_certificate().subject_public_key_info();
    if tls13 {
        let spki = key.to_der().map_err(encoding)?;
        let spki = SubjectPublicKeyInfoDer::from(spki.as_slice());
        return verify_tls13_signature_with_raw_key(message, &spki, dss, algorithms);
    }
    let candidates = algorithms
        .mapping
        .iter()
        .find(|(scheme, _)| *scheme == dss.scheme)
        .map(|(_, candidates)| *candidates)
        .ok_or(rustls::Error::PeerMisbehaved(
            PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
        ))?;
    // The algorithm identifier without its SEQUENCE header, as the algorithms give theirs.
    let whole = key.algorithm.to_der().map_err(encoding)?;
    let value_len = key.algorithm.value_len().map_err(encoding)?;
    let value_len = usize::try_from(value_len).unwrap_or(usize::MAX);
    let key_algorithm = &whole[whole.len().saturating_sub(value_len)..];
    let algorithm = candidates
        .iter()
        .find(|algorithm| algorithm.public_key_alg_id().as_ref() == key_algorithm)
        .ok_or(invalid(CertificateError::BadSignature))?;
    algorithm
        .verify_signature(key.subject_public_key.raw_bytes(), message, dss.signature())
        .map(|()| HandshakeSignatureValid::assertion())
        .map_err(|_| invalid(CertificateError::BadSignature))
}
