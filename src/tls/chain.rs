//! A server's certificate chain and its key as loaded (or made), and why a certificate and
//! key are refused together: shared by the one-certificate configuration and the
//! certificates chosen by name.

use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::pem::{self, load_certificates, load_private_key};
use crate::error::{Error, Op, Result};

/// A certificate chain and its key, loaded (or made).
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
    /// The certificate and key files it came from (`None`: made on the spot).
    pub(crate) files: Option<(PathBuf, PathBuf)>,
}

impl Loaded {
    /// The same chain and key, for a configuration built again.
    pub(crate) fn duplicate(&self) -> Loaded {
        Loaded {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            files: self.files.clone(),
        }
    }

    /// Reads a certificate chain and its key.
    pub(crate) fn read(cert: &Path, key: &Path) -> Result<Loaded> {
        Ok(Loaded {
            chain: load_certificates(cert)?,
            key: load_private_key(key)?,
            files: Some((cert.to_owned(), key.to_owned())),
        })
    }
}

/// Why the certificate and key of `files` (`None`: made here) were refused together: as
/// the error on the certificate file when the certificate cannot be used, else on the key
/// file.
pub(crate) fn pair_error(files: Option<&(PathBuf, PathBuf)>, err: &rustls::Error) -> Error {
    let (reason, on_certificate) = match (err, files) {
        (rustls::Error::InconsistentKeys(_), Some((cert, _))) => (
            format!("it does not match the certificate in {}", cert.display()),
            false,
        ),
        (rustls::Error::InconsistentKeys(_), None) => {
            ("it does not match the certificate".to_owned(), false)
        }
        (rustls::Error::InvalidCertificate(_), _) => (own_certificate(err), true),
        // The provider's words for a key it read but cannot sign with.
        (rustls::Error::General(text), _) if text.contains("failed to parse private key") => (
            "this kind or size of key is not supported (RSA of 2048 bits or more, ECDSA \
             P-256 or P-384, Ed25519)"
                .to_owned(),
            false,
        ),
        (other, _) => (format!("unusable: {}", super::describe(other)), false),
    };
    match files {
        Some((cert, _)) if on_certificate => pem::invalid(cert, "TLS certificate", reason),
        Some((_, key)) => pem::invalid(key, "TLS private key", reason),
        None => generate_error(reason),
    }
}

/// Why this side's own certificate cannot be used, in words about it (not a peer's).
fn own_certificate(err: &rustls::Error) -> String {
    let described = super::describe(err);
    if let Some(why) = described.strip_prefix("certificate ") {
        return format!("the certificate {why}");
    }
    format!("the certificate cannot be used: {described}")
}

/// An error in making a self-signed certificate, for `reason`.
pub(crate) fn generate_error(reason: String) -> Error {
    Error::without_target(
        Op::Generate("a self-signed TLS certificate"),
        std::io::Error::other(reason),
    )
}
