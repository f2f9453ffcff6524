//! Certificates and keys from PEM files, with a reason in words when a file is not what it
//! should be: missing, not PEM, DER where PEM was expected, an encrypted key, or PEM that
//! holds something else.

use std::io;
use std::path::Path;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Op, Result};

/// What a loader reads, as the error sentence names it.
const CERTIFICATE: &str = "TLS certificate";
const KEY: &str = "TLS private key";
const CA: &str = "TLS CA certificates";

/// Every certificate in a PEM file, in order (a server's chain: its own first).
///
/// # Errors
///
/// `cannot load TLS certificate FILE: REASON` — the file cannot be read, holds no
/// `CERTIFICATE` block, or a block is damaged.
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("cert.pem");
/// std::fs::write(&path, "not a certificate")?;
/// let err = socketkit::tls::load_certificates(&path).unwrap_err();
/// assert!(err.to_string().contains("not a PEM file"), "{err}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    load_all(path, CERTIFICATE, "CERTIFICATE")
}

/// Every certificate in a PEM file of trusted authorities (`--tls-ca`, `--tls-client-ca`).
///
/// # Errors
///
/// As [`load_certificates`], named `TLS CA certificates`.
pub fn load_ca_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    load_all(path, CA, "CERTIFICATE")
}

/// The first private key in a PEM file: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`)
/// or SEC1 (`EC PRIVATE KEY`).
///
/// # Errors
///
/// `cannot load TLS private key FILE: REASON` — the file cannot be read, holds no key, or
/// holds an encrypted one.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    const ENCRYPTED: &str =
        "the key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN)";
    let bytes = read(path, KEY)?;
    // OpenSSL's older form: a `RSA PRIVATE KEY` block whose headers say it is encrypted,
    // which the base64 decoder would call damaged.
    if contains(&bytes, b"Proc-Type: 4,ENCRYPTED") {
        return Err(invalid(path, KEY, ENCRYPTED.to_owned()));
    }
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| {
        let reason = match err {
            pem::Error::NoItemsFound if contains(&bytes, b"ENCRYPTED PRIVATE KEY") => {
                ENCRYPTED.to_owned()
            }
            pem::Error::NoItemsFound => not_found(
                &bytes,
                "private key (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)",
            ),
            other => damaged(&other),
        };
        invalid(path, KEY, reason)
    })
}

fn load_all(path: &Path, what: &'static str, label: &str) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid(path, what, damaged(&err)))?;
    if certs.is_empty() {
        let wanted = format!("certificate (-----BEGIN {label}-----)");
        return Err(invalid(path, what, not_found(&bytes, &wanted)));
    }
    Ok(certs)
}

/// The file's bytes, without the UTF-8 byte order mark an editor may put first (OpenSSL
/// and Python read such files; the PEM parser would skip the first block with it): see
/// [`crate::option_file::read`].
fn read(path: &Path, what: &'static str) -> Result<Vec<u8>> {
    crate::option_file::read(path).map_err(|err| Error::new(Op::Load(what), path.display(), err))
}

/// Why a file holds none of what was wanted: it is not PEM at all (perhaps DER), or its PEM
/// blocks are of another kind.
fn not_found(bytes: &[u8], wanted: &str) -> String {
    if !contains(bytes, b"-----BEGIN ") {
        // An X.509 certificate or key in DER starts with an ASN.1 SEQUENCE tag.
        if bytes.first() == Some(&0x30) {
            return "not a PEM file: it looks like DER; convert it with \
                    openssl x509 -inform der (or openssl pkey -inform der)"
                .to_owned();
        }
        return "not a PEM file (no -----BEGIN line)".to_owned();
    }
    format!("no {wanted} in the file")
}

fn damaged(err: &pem::Error) -> String {
    match err {
        pem::Error::MissingSectionEnd { .. } => "a PEM block has no -----END line".to_owned(),
        pem::Error::IllegalSectionStart { .. } => "a -----BEGIN line is malformed".to_owned(),
        pem::Error::Base64Decode(_) => "a PEM block is not valid base64".to_owned(),
        other => format!("not a valid PEM file ({other})"),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// An error about the content of `path` (not about reading it).
pub(crate) fn invalid(path: &Path, what: &'static str, reason: String) -> Error {
    let err = io::Error::new(io::ErrorKind::InvalidData, reason);
    Error::new(Op::Load(what), path.display(), err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("x.pem");
        std::fs::write(&path, content).expect("write");
        (dir, path)
    }

    #[test]
    fn a_missing_file_is_named_with_the_os_reason() {
        let err = load_certificates(Path::new("/nonexistent/cert.pem")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot load TLS certificate /nonexistent/cert.pem: no such file or directory"
        );
    }

    #[test]
    fn text_that_is_not_pem_says_so() {
        let (_dir, path) = file(b"hello");
        let err = load_private_key(&path).unwrap_err().to_string();
        assert!(
            err.ends_with("not a PEM file (no -----BEGIN line)"),
            "{err}"
        );
    }

    #[test]
    fn der_is_recognised() {
        let (_dir, path) = file(&[0x30, 0x82, 0x01, 0x00]);
        let err = load_certificates(&path).unwrap_err().to_string();
        assert!(err.contains("it looks like DER"), "{err}");
    }

    #[test]
    fn pem_of_the_wrong_kind_names_what_was_wanted() {
        let key = rcgen::KeyPair::generate().expect("key").serialize_pem();
        let (_dir, path) = file(key.as_bytes());
        let err = load_certificates(&path).unwrap_err().to_string();
        assert!(
            err.ends_with("no certificate (-----BEGIN CERTIFICATE-----) in the file"),
            "{err}"
        );
        assert!(load_private_key(&path).is_ok());
    }

    #[test]
    fn encrypted_keys_are_named() {
        let (_dir, path) = file(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        let err = load_private_key(&path).unwrap_err().to_string();
        assert!(err.contains("the key is encrypted"), "{err}");
    }

    #[test]
    fn an_older_encrypted_key_is_named_and_a_byte_order_mark_is_skipped() {
        let (_dir, path) = file(
            b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
              DEK-Info: AES-256-CBC,0011\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        );
        let err = load_private_key(&path).unwrap_err().to_string();
        assert!(err.contains("the key is encrypted"), "{err}");
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("made");
        let mut with_mark = b"\xEF\xBB\xBF".to_vec();
        with_mark.extend(made.cert.pem().as_bytes());
        with_mark.extend(made.cert.pem().as_bytes());
        let (_dir, path) = file(&with_mark);
        assert_eq!(load_certificates(&path).expect("two certificates").len(), 2);
        let mut key = b"\xEF\xBB\xBF".to_vec();
        key.extend(made.key_pair.serialize_pem().as_bytes());
        let (_dir, path) = file(&key);
        assert!(load_private_key(&path).is_ok());
    }

    #[test]
    fn a_truncated_block_is_damaged() {
        let (_dir, path) = file(b"-----BEGIN CERTIFICATE-----\nAAAA\n");
        let err = load_certificates(&path).unwrap_err().to_string();
        assert!(err.ends_with("a PEM block has no -----END line"), "{err}");
    }
}
