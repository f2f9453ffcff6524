//! A certificate's SHA-256 fingerprint: what `serve --tls-self-signed` prints for its
//! throwaway certificate, and what a client can pin instead of trusting a CA — it then
//! accepts exactly that certificate, as `ssh` accepts a known host key.

use std::fmt;
use std::str::FromStr;

/// The SHA-256 digest of a DER certificate, shown as OpenSSL prints it (`openssl x509
/// -fingerprint -sha256`): upper-case hex pairs joined by colons.
///
/// # Examples
///
/// ```
/// use socketkit::tls::Fingerprint;
/// let of_nothing = Fingerprint::of(b"");
/// assert!(of_nothing.to_string().starts_with("E3:B0:C4:42:98:FC"));
/// // Read back with or without the colons, in either case.
/// let text = of_nothing.to_string().replace(':', "").to_lowercase();
/// assert_eq!(text.parse::<Fingerprint>().unwrap(), of_nothing);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of the DER certificate `der`.
    pub fn of(der: &[u8]) -> Fingerprint {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut bytes = [0; 32];
        bytes.copy_from_slice(digest.as_ref());
        Fingerprint(bytes)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

/// Text that is not a SHA-256 fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a SHA-256 fingerprint is 32 bytes in hex, as AB:CD:…:EF (64 hex digits, colons optional)")]
pub struct NotAFingerprint;

impl FromStr for Fingerprint {
    type Err = NotAFingerprint;

    fn from_str(text: &str) -> Result<Fingerprint, NotAFingerprint> {
        let digits: Vec<u8> = text.bytes().filter(|&b| b != b':').collect();
        // Colons only between pairs: "AB:CD", "ABCD"; not "A:BCD".
        let colons_in_place = !text.contains(':')
            || text
                .split(':')
                .all(|pair| pair.len() == 2 && pair.is_ascii());
        if digits.len() != 64 || !colons_in_place {
            return Err(NotAFingerprint);
        }
        let mut bytes = [0; 32];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| NotAFingerprint)?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| NotAFingerprint)?;
        }
        Ok(Fingerprint(bytes))
    }
}

/// A server certificate that is not the pinned one (the error of a pinning client's
/// handshake, inside `rustls::CertificateError::Other`).
#[derive(Debug, thiserror::Error)]
#[error("certificate has SHA-256 fingerprint {presented}, not the pinned {pinned}")]
pub(crate) struct NotPinned {
    pub(crate) presented: Fingerprint,
    pub(crate) pinned: Fingerprint,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_as_openssl_and_reads_back_in_any_usual_form() {
        let fp = Fingerprint::of(b"socketkit");
        let shown = fp.to_string();
        assert_eq!(shown.len(), 32 * 3 - 1);
        assert!(shown.bytes().all(|b| b == b':' || b.is_ascii_hexdigit()));
        assert_eq!(shown.to_uppercase(), shown);
        for form in [shown.clone(), shown.to_lowercase(), shown.replace(':', "")] {
            assert_eq!(form.parse::<Fingerprint>(), Ok(fp), "{form}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        let shown = Fingerprint::of(b"x").to_string();
        let bad = [
            String::new(),
            shown[..shown.len() - 3].to_owned(), // a byte short
            format!("{shown}:00"),               // a byte long
            shown.replacen(':', "", 1),          // a colon out of place
            format!("G{}", &shown[1..]),         // not hex
            format!(":{shown}"),
            "é".repeat(32),
        ];
        for text in bad {
            if text == shown {
                continue; // the replacements found nothing to replace
            }
            assert_eq!(text.parse::<Fingerprint>(), Err(NotAFingerprint), "{text}");
        }
    }
}
