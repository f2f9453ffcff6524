//! The server side: a `rustls::ServerConfig` from PEM files or a throwaway self-signed
//! certificate, with optional client authentication (mutual TLS) and ALPN.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use super::by_name::ByName;
use super::chain::{Loaded, generate_error, pair_error};
use super::fingerprint::Fingerprint;
use super::pem::{self, load_ca_certificates};
use super::provider;
use crate::error::{Error, Op, Result};

/// Where a TLS server's certificate comes from.
#[derive(Debug, Clone)]
pub enum Identity {
    /// A certificate chain (the server's own first) and its private key, in PEM files.
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// The private key: PKCS#8, PKCS#1 or SEC1.
        key: PathBuf,
    },
    /// A throwaway self-signed certificate (ECDSA P-256) for these names: DNS names or IP
    /// addresses.
    SelfSigned(Vec<String>),
    /// Several certificates (each a chain and its key, in PEM files), chosen by the name a
    /// client asks for (SNI) among the DNS names of each certificate (`*.example.com`
    /// covering one label); the first is for clients that ask for no name or one that none
    /// of them has. Each certificate after the first must name a host.
    ByName(Vec<(PathBuf, PathBuf)>),
}

/// What a TLS server is made of.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The server's certificate and key.
    pub identity: Identity,
    /// With a file of CA certificates, every client must present a certificate signed by
    /// one of them (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// With [`ServerOptions::client_ca`]: a client may also present no certificate (one it
    /// presents must still be signed by a CA of the file), for services that serve
    /// anonymous clients and tell authenticated ones apart.
    pub client_cert_optional: bool,
    /// Application protocols (ALPN) the server accepts, in order of preference; a client
    /// that offers ALPN but none of these is refused.
    pub alpn: Vec<Vec<u8>>,
}

impl ServerOptions {
    /// A server with `identity`, no client authentication and no ALPN.
    pub fn new(identity: Identity) -> ServerOptions {
        ServerOptions {
            identity,
            client_ca: None,
            client_cert_optional: false,
            alpn: Vec::new(),
        }
    }
}

/// A server configuration ready to use, and what a self-signed one is.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The configuration, for the server builder or a `tokio_rustls::TlsAcceptor`.
    pub config: Arc<ServerConfig>,
    /// For [`Identity::SelfSigned`]: the certificate that was made.
    pub self_signed: Option<SelfSigned>,
}

/// A certificate made on the spot, for clients that pin it rather than verify it.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// The names it is valid for.
    pub names: Vec<String>,
    /// Its SHA-256 fingerprint; shown (`Display`) as `openssl x509 -fingerprint -sha256`
    /// prints it (`AB:CD:…`), and what a client pins (`ClientOptions::pin`).
    pub fingerprint: Fingerprint,
    /// The certificate in PEM, for a client to trust (`--tls-ca`).
    pub pem: String,
}

/// Builds a server configuration from `options`.
///
/// # Errors
///
/// A certificate, key or CA file that cannot be read or is not what it should be, and a key
/// that does not belong to the certificate: `cannot load TLS private key KEY: it does not
/// match the certificate in CERT`.
///
/// # Examples
///
/// ```
/// use socketkit::tls::{Identity, ServerOptions, server_config};
/// let tls = server_config(&ServerOptions::new(Identity::SelfSigned(vec!["localhost".into()])))?;
/// assert_eq!(tls.self_signed.unwrap().fingerprint.to_string().len(), 32 * 3 - 1);
/// # Ok::<(), socketkit::Error>(())
/// ```
pub fn server_config(options: &ServerOptions) -> Result<ServerTls> {
    let (loaded, self_signed) = identity(&options.identity)?;
    Ok(ServerTls {
        config: Arc::new(build(options, loaded)?),
        self_signed,
    })
}

/// The certificate chains and keys of `identity`: read from its files, or made on the spot
/// (with what was made).
pub(crate) fn identity(identity: &Identity) -> Result<(Vec<Loaded>, Option<SelfSigned>)> {
    match identity {
        Identity::Files { cert, key } => Ok((vec![Loaded::read(cert, key)?], None)),
        Identity::ByName(pairs) => {
            let loaded = pairs
                .iter()
                .map(|(cert, key)| Loaded::read(cert, key))
                .collect::<Result<Vec<_>>>()?;
            Ok((loaded, None))
        }
        Identity::SelfSigned(names) => {
            let (cert, key, made) = self_signed(names)?;
            let loaded = Loaded {
                chain: vec![cert],
                key,
                files: None,
            };
            Ok((vec![loaded], Some(made)))
        }
    }
}

/// A server configuration with the `loaded` certificates (one, or several chosen by name)
/// and the rest of `options` (the client CA file, read now, and ALPN).
pub(crate) fn build(options: &ServerOptions, mut loaded: Vec<Loaded>) -> Result<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?;
    let builder = match &options.client_ca {
        Some(path) => {
            let roots = root_store(path)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = match options.client_cert_optional {
                true => verifier.allow_unauthenticated(),
                false => verifier,
            };
            let verifier = verifier.build().map_err(|err| {
                pem::invalid(path, "TLS CA certificates", format!("unusable: {err}"))
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = if loaded.len() == 1 {
        let Loaded { chain, key, files } = loaded.remove(0);
        builder
            .with_single_cert(chain, key)
            .map_err(|err| pair_error(files.as_ref(), &err))?
    } else {
        builder.with_cert_resolver(Arc::new(ByName::new(loaded)?))
    };
    config.alpn_protocols.clone_from(&options.alpn);
    Ok(config)
}

/// Trusted CA certificates from a PEM file.
pub(crate) fn root_store(path: &Path) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in load_ca_certificates(path)? {
        roots.add(cert).map_err(|err| {
            let reason = format!(
                "a certificate is unusable as a CA: {}",
                super::describe(&err)
            );
            pem::invalid(path, "TLS CA certificates", reason)
        })?;
    }
    Ok(Arc::new(roots))
}

/// Why a certificate and key were refused together, as the error on the key file.
pub(crate) fn identity_error(identity: &Identity, err: &rustls::Error) -> Error {
    match identity {
        Identity::Files { cert, key } => pair_error(Some(&(cert.clone(), key.clone())), err),
        Identity::SelfSigned(_) | Identity::ByName(_) => pair_error(None, err),
    }
}

fn config_error(err: rustls::Error) -> Error {
    let reason = std::io::Error::other(super::describe(&err));
    Error::without_target(Op::Load("TLS configuration"), reason)
}

/// A self-signed ECDSA P-256 certificate for `names`.
fn self_signed(
    names: &[String],
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>, SelfSigned)> {
    let fail = |err: rcgen::Error| generate_error(err.to_string());
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail)?;
    let cert = rcgen::CertificateParams::new(names.to_vec())
        .and_then(|params| params.self_signed(&key))
        .map_err(fail)?;
    let made = SelfSigned {
        names: names.to_vec(),
        fingerprint: Fingerprint::of(cert.der()),
        pem: cert.pem(),
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((cert.der().clone(), key, made))
}
