//! TLS failures in words: what a user can act on (expired, unknown issuer, name mismatch, no
//! shared cipher…) rather than the name of an enum variant.

use std::io;
use std::time::{Duration, SystemTime};

use rustls::pki_types::UnixTime;
use rustls::{AlertDescription, CertificateError, PeerIncompatible};

use super::fingerprint::NotPinned;

/// A TLS error as one lower-case sentence.
///
/// # Examples
///
/// ```
/// use socketkit::tls::{describe, rustls};
/// let err = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
/// assert_eq!(
///     describe(&err),
///     "certificate has an unknown issuer (it is not signed by a trusted CA)"
/// );
/// ```
pub fn describe(err: &rustls::Error) -> String {
    use rustls::Error as E;
    match err {
        E::InvalidCertificate(cert) => certificate(cert),
        E::NoCertificatesPresented => {
            "the peer sent no certificate, and one is required".to_owned()
        }
        E::PeerIncompatible(why) => incompatible(why),
        E::AlertReceived(alert) => alert_received(*alert),
        E::InvalidMessage(_) => {
            "the peer does not speak TLS (what it sent is not a TLS record)".to_owned()
        }
        E::InappropriateMessage { got_type, .. } => {
            format!(
                "the peer does not follow the TLS handshake (it sent an unexpected {got_type:?} record)"
            )
        }
        E::InappropriateHandshakeMessage { got_type, .. } => format!(
            "the peer does not follow the TLS handshake (it sent an unexpected {got_type:?})"
        ),
        E::DecryptError => "a TLS record failed to decrypt (corrupted or tampered with)".to_owned(),
        E::NoApplicationProtocol => {
            "no application protocol (ALPN) in common with the peer".to_owned()
        }
        E::PeerMisbehaved(why) => format!("the peer broke the TLS protocol ({why:?})"),
        E::InconsistentKeys(_) => "the private key does not match the certificate".to_owned(),
        E::General(text) => text.clone(),
        other => lower_first(&other.to_string()),
    }
}

/// Rewrites an I/O error that carries a TLS error (as `tokio-rustls` returns them) in words,
/// keeping its kind; other errors pass unchanged.
pub(crate) fn in_words(err: io::Error) -> io::Error {
    match tls_words(&err) {
        Some(words) => io::Error::new(err.kind(), words),
        None => err,
    }
}

/// What went wrong, in words, for an I/O error that may carry a TLS error (as
/// [`crate::error::describe`] says it for any other).
pub(crate) fn words_of(err: &io::Error) -> String {
    tls_words(err).unwrap_or_else(|| crate::error::describe(err))
}

/// The words for a TLS error `err` carries, if it carries one.
fn tls_words(err: &io::Error) -> Option<String> {
    // rustls's own sentence for it ends in a link to its manual.
    if err.kind() == io::ErrorKind::UnexpectedEof && err.to_string().contains("close_notify") {
        return Some(TRUNCATED.to_owned());
    }
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map(describe)
}

/// The reason for a truncated stream: the peer's TCP connection ended without the TLS
/// close_notify that says the data is complete.
pub(crate) const TRUNCATED: &str =
    "the peer closed the connection without a TLS close_notify, so the data may be truncated";

/// A failure during the handshake in words; an EOF there is a peer that hung up mid-way.
pub(crate) fn handshake_failure(err: io::Error) -> io::Error {
    match err.kind() {
        io::ErrorKind::UnexpectedEof => io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the peer closed the connection during the TLS handshake",
        ),
        _ => in_words(err),
    }
}

fn certificate(err: &CertificateError) -> String {
    use CertificateError as C;
    match err {
        C::Expired => "certificate has expired".to_owned(),
        C::ExpiredContext { time, not_after } => format!(
            "certificate has expired: it was valid until {} (it is now {})",
            date(*not_after),
            date(*time)
        ),
        C::NotValidYet => "certificate is not valid yet".to_owned(),
        C::NotValidYetContext { time, not_before } => format!(
            "certificate is not valid yet: it is valid from {} (it is now {})",
            date(*not_before),
            date(*time)
        ),
        C::UnknownIssuer => {
            "certificate has an unknown issuer (it is not signed by a trusted CA)".to_owned()
        }
        C::NotValidForName => "certificate is not valid for the name asked for".to_owned(),
        C::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "certificate is not valid for {} (it names {})",
            expected.to_str(),
            if presented.is_empty() {
                "no name".to_owned()
            } else {
                presented
                    .iter()
                    .map(|name| plain_name(name))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
        C::BadSignature => "certificate has a bad signature".to_owned(),
        C::Revoked => "certificate has been revoked".to_owned(),
        C::BadEncoding => "certificate is malformed".to_owned(),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "certificate is not meant for this use (server or client authentication)".to_owned()
        }
        // webpki's own reasons come through as `Other`; this one is common enough to name:
        // `openssl req -x509` marks its self-signed certificates CA:TRUE by default.
        C::Other(other) if other.to_string().contains("CaUsedAsEndEntity") => {
            "certificate is a CA certificate, which cannot be a server's or client's own \
             (make it with basicConstraints CA:FALSE)"
                .to_owned()
        }
        // webpki tries each trusted certificate whose subject is the issuer's name; one with
        // the name but another kind of key (a system store's `localhost` snakeoil, say)
        // ends the search with this rather than "unknown issuer".
        C::UnsupportedSignatureAlgorithmForPublicKeyContext {
            signature_algorithm_id,
            public_key_algorithm_id,
        } => format!(
            "certificate is signed with {} but the trusted certificate named as its issuer has \
             {} key: it is not signed by a trusted CA",
            algorithm(signature_algorithm_id),
            with_article(&algorithm(public_key_algorithm_id)),
        ),
        C::UnsupportedSignatureAlgorithmContext {
            signature_algorithm_id,
            ..
        } => format!(
            "certificate is signed with an algorithm this side does not support ({})",
            algorithm(signature_algorithm_id)
        ),
        C::UnhandledCriticalExtension => {
            "certificate has a critical extension this side does not understand".to_owned()
        }
        // webpki parses only X.509 version 3, as the Web PKI has it.
        C::Other(other) if other.to_string().contains("UnsupportedCertVersion") => {
            "certificate is X.509 version 1, which is not supported here (make a version 3 \
             one, with extensions: openssl x509 -req … -extfile; a client may pin it with \
             --tls-fingerprint)"
                .to_owned()
        }
        C::Other(other) if other.to_string().contains("UnsupportedCriticalExtension") => {
            "certificate has a critical extension this side does not understand".to_owned()
        }
        // A pinning client's own reason (see `client.rs`): its words as they are.
        C::Other(other) if other.0.is::<NotPinned>() => other.to_string(),
        other => format!(
            "certificate rejected: {}",
            lower_first(&rustls::Error::InvalidCertificate(other.clone()).to_string())
        ),
    }
}

/// The name of the algorithm an `AlgorithmIdentifier`'s DER (its OID first) names, or the
/// OID in dotted form.
fn algorithm(der: &[u8]) -> String {
    let Some(dotted) = oid(der) else {
        return "an unreadable identifier".to_owned();
    };
    let name = match dotted.as_str() {
        "1.2.840.113549.1.1.1" => "RSA",
        "1.2.840.113549.1.1.10" => "RSA-PSS",
        "1.2.840.113549.1.1.11" => "RSA with SHA-256",
        "1.2.840.113549.1.1.12" => "RSA with SHA-384",
        "1.2.840.113549.1.1.13" => "RSA with SHA-512",
        "1.2.840.10045.2.1" => "EC",
        "1.2.840.10045.4.3.2" => "ECDSA with SHA-256",
        "1.2.840.10045.4.3.3" => "ECDSA with SHA-384",
        "1.2.840.10045.4.3.4" => "ECDSA with SHA-512",
        "1.3.101.112" => "Ed25519",
        "1.3.101.113" => "Ed448",
        _ => return format!("OID {dotted}"),
    };
    name.to_owned()
}

/// The dotted form of the OID a DER TLV (tag 6) at the start of `der` holds.
fn oid(der: &[u8]) -> Option<String> {
    let (&6, rest) = der.split_first()? else {
        return None;
    };
    let (&len, rest) = rest.split_first()?;
    let body = rest.get(..usize::from(len))?;
    let (&first, tail) = body.split_first()?;
    let mut arcs = vec![u64::from(first / 40).min(2), 0];
    arcs[1] = u64::from(first) - arcs[0] * 40;
    let mut value: u64 = 0;
    for &byte in tail {
        value = value.checked_mul(128)? | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            arcs.push(value);
            value = 0;
        }
    }
    Some(
        arcs.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// "an RSA", "an EC", "an Ed25519": the article the name's sound takes.
fn with_article(name: &str) -> String {
    let vowel_sound = name.starts_with(['A', 'E', 'I', 'O', 'R', 'S']) || name.starts_with("OID");
    format!("{} {name}", if vowel_sound { "an" } else { "a" })
}

fn incompatible(why: &PeerIncompatible) -> String {
    use PeerIncompatible as P;
    match why {
        P::NoCipherSuitesInCommon => "no cipher suite in common with the peer".to_owned(),
        P::NoKxGroupsInCommon => "no key exchange group in common with the peer".to_owned(),
        P::NoSignatureSchemesInCommon | P::NoCertificateRequestSignatureSchemesInCommon => {
            "no signature scheme in common with the peer".to_owned()
        }
        P::ServerDoesNotSupportTls12Or13
        | P::SupportedVersionsExtensionRequired
        | P::Tls12NotOffered
        | P::Tls12NotOfferedOrEnabled
        | P::ServerTlsVersionIsDisabledByOurConfig => {
            "no TLS version in common with the peer (socketkit speaks TLS 1.2 and 1.3)".to_owned()
        }
        other => format!("the peer is incompatible ({other:?})"),
    }
}

fn alert_received(alert: AlertDescription) -> String {
    use AlertDescription as A;
    let name = words(&format!("{alert:?}"));
    match alert {
        A::HandshakeFailure | A::InsufficientSecurity => format!(
            "the peer refused the handshake ({name} alert: no cipher suite in common, \
             or a client certificate it requires)"
        ),
        A::ProtocolVersion => {
            format!("the peer refused the handshake ({name} alert: no TLS version in common)")
        }
        A::BadCertificate
        | A::UnsupportedCertificate
        | A::CertificateRevoked
        | A::CertificateExpired
        | A::CertificateUnknown
        | A::UnknownCA
        | A::AccessDenied => format!("the peer rejected our certificate ({name} alert)"),
        A::CertificateRequired => {
            "the peer requires a client certificate (certificate required alert)".to_owned()
        }
        A::NoApplicationProtocol => {
            "no application protocol (ALPN) in common with the peer (no application protocol alert)"
                .to_owned()
        }
        A::UnrecognisedName => {
            format!("the peer does not serve the name we asked for ({name} alert)")
        }
        _ => format!("the peer ended the connection with a TLS {name} alert"),
    }
}

/// webpki lists a certificate's names in their debug form (`DnsName("localhost")`,
/// `IpAddress(127.0.0.1)`): the name alone is what a user compares.
fn plain_name(presented: &str) -> String {
    if let Some(dns) = presented
        .strip_prefix("DnsName(")
        .and_then(|r| r.strip_suffix(')'))
    {
        return dns.trim_matches('"').to_owned();
    }
    if let Some(ip) = presented
        .strip_prefix("IpAddress(")
        .and_then(|r| r.strip_suffix(')'))
    {
        // webpki writes IPv6 without compressing its leading zero (`0::1`).
        return ip
            .parse::<std::net::IpAddr>()
            .map_or_else(|_| ip.to_owned(), |ip| ip.to_string());
    }
    presented.to_owned()
}

/// `HandshakeFailure` → `handshake failure`; `UnknownCA` → `unknown CA`.
fn words(camel: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = camel.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
        let prev_lower = i > 0 && chars[i - 1].is_lowercase();
        if i > 0 && c.is_uppercase() && (prev_lower || next_lower) {
            out.push(' ');
        }
        out.push(c);
    }
    // Lower each word that is not an acronym.
    out.split(' ')
        .map(|word| {
            if word.chars().skip(1).any(char::is_uppercase) {
                word.to_owned()
            } else {
                word.to_lowercase()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn date(time: UnixTime) -> String {
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(time.as_secs());
    humantime::format_rfc3339_seconds(when).to_string()
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;

    #[test]
    fn the_common_failures_read_as_words() {
        let expired = CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(Duration::from_secs(1_700_000_000)),
            not_after: UnixTime::since_unix_epoch(Duration::from_secs(1_600_000_000)),
        };
        assert_eq!(
            certificate(&expired),
            "certificate has expired: it was valid until 2020-09-13T12:26:40Z \
             (it is now 2023-11-14T22:13:20Z)"
        );
        let name = CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("wrong.example").expect("a name"),
            presented: vec![
                "DnsName(\"localhost\")".into(),
                "IpAddress(127.0.0.1)".into(),
                "IpAddress(0::1)".into(),
            ],
        };
        assert_eq!(
            certificate(&name),
            "certificate is not valid for wrong.example (it names localhost, 127.0.0.1, ::1)"
        );
        assert_eq!(
            describe(&rustls::Error::PeerIncompatible(
                PeerIncompatible::NoCipherSuitesInCommon
            )),
            "no cipher suite in common with the peer"
        );
    }

    #[test]
    fn a_key_of_the_wrong_kind_under_the_issuers_name_reads_as_words() {
        let mismatch = CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext {
            // ecdsa-with-SHA256; rsaEncryption with its NULL parameters.
            signature_algorithm_id: vec![6, 8, 0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 2],
            public_key_algorithm_id: vec![6, 9, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 1, 5, 0],
        };
        assert_eq!(
            certificate(&mismatch),
            "certificate is signed with ECDSA with SHA-256 but the trusted certificate named \
             as its issuer has an RSA key: it is not signed by a trusted CA"
        );
        assert_eq!(algorithm(&[6, 3, 0x2b, 0x65, 0x70]), "Ed25519");
        assert_eq!(algorithm(&[6, 3, 0x2b, 0x65, 0x6f]), "OID 1.3.101.111");
        assert_eq!(algorithm(&[4, 1, 0]), "an unreadable identifier");
        assert_eq!(algorithm(&[6, 9, 1]), "an unreadable identifier");
    }

    #[test]
    fn alert_names_become_words() {
        assert_eq!(words("HandshakeFailure"), "handshake failure");
        assert_eq!(words("UnknownCA"), "unknown CA");
        assert_eq!(
            alert_received(AlertDescription::UnknownCA),
            "the peer rejected our certificate (unknown CA alert)"
        );
    }

    #[test]
    fn io_errors_carrying_tls_errors_are_rewritten() {
        let io = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert_eq!(
            in_words(io).to_string(),
            "certificate has an unknown issuer (it is not signed by a trusted CA)"
        );
    }
}
