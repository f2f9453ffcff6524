//! The TLVs a v2 header carries after its addresses (type, 16-bit length, value): what a
//! relay that terminated TLS, or read a ClientHello, knows of the client's session and the
//! target does not — the server name it asked for, the protocol it chose, and who it is
//! (HAProxy's `send-proxy-v2-ssl-cn`). Receivers skip the types they do not know, as the
//! specification asks.

/// `PP2_TYPE_ALPN`: the application protocol agreed on.
const ALPN: u8 = 0x01;
/// `PP2_TYPE_AUTHORITY`: the host name the client asked for (SNI).
const AUTHORITY: u8 = 0x02;
/// `PP2_TYPE_SSL`: the client spoke TLS to the proxy; sub-TLVs follow its flags.
const SSL: u8 = 0x20;
/// `PP2_SUBTYPE_SSL_VERSION`: the protocol version, as OpenSSL names it.
const SSL_VERSION: u8 = 0x21;
/// `PP2_SUBTYPE_SSL_CN`: the common name of the client certificate's subject.
const SSL_CN: u8 = 0x22;
/// `PP2_CLIENT_SSL`: the connection was TLS.
const CLIENT_SSL: u8 = 0x01;
/// `PP2_CLIENT_CERT_CONN`: the client sent a certificate on this connection.
const CLIENT_CERT_CONN: u8 = 0x02;
/// `PP2_CLIENT_CERT_SESS`: the client sent a certificate in this session.
const CLIENT_CERT_SESS: u8 = 0x04;

/// What a v2 header says about the client beyond its address.
///
/// # Examples
///
/// ```
/// use socketkit::proxy_protocol::{Tls, Tlvs};
/// let tlvs = Tlvs {
///     authority: Some("shop.example.com".into()),
///     alpn: Some(b"h2".to_vec()),
///     tls: Some(Tls { version: "TLSv1.3".into(), client_verified: true, client_cn: Some("alice".into()) }),
/// };
/// assert_eq!(Tlvs::parse(&tlvs.to_bytes()), Some(tlvs));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tlvs {
    /// The server name the client asked for (`PP2_TYPE_AUTHORITY`).
    pub authority: Option<String>,
    /// The application protocol agreed on (`PP2_TYPE_ALPN`).
    pub alpn: Option<Vec<u8>>,
    /// The client's TLS session with the proxy (`PP2_TYPE_SSL`).
    pub tls: Option<Tls>,
}

/// A client's TLS session with the proxy (`PP2_TYPE_SSL` and its sub-TLVs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// `TLSv1.3` or `TLSv1.2` (`PP2_SUBTYPE_SSL_VERSION`).
    pub version: String,
    /// Whether the client sent a certificate and it verified (`verify` is 0 then).
    pub client_verified: bool,
    /// The common name of the client certificate's subject (`PP2_SUBTYPE_SSL_CN`).
    pub client_cn: Option<String>,
}

impl Tlvs {
    /// Whether there is nothing to say.
    pub fn is_empty(&self) -> bool {
        self.authority.is_none() && self.alpn.is_none() && self.tls.is_none()
    }

    /// The TLVs as a header carries them. A value longer than a TLV holds (64 KiB) is cut;
    /// none of these comes near it (a server name is at most 255 bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(alpn) = &self.alpn {
            push(&mut out, ALPN, alpn);
        }
        if let Some(authority) = &self.authority {
            push(&mut out, AUTHORITY, authority.as_bytes());
        }
        if let Some(tls) = &self.tls {
            let mut value = Vec::new();
            let mut client = CLIENT_SSL;
            if tls.client_verified {
                client |= CLIENT_CERT_CONN | CLIENT_CERT_SESS;
            }
            value.push(client);
            // 0: a certificate was sent and verified; anything else: it was not.
            let verify: u32 = if tls.client_verified { 0 } else { 1 };
            value.extend_from_slice(&verify.to_be_bytes());
            push(&mut value, SSL_VERSION, tls.version.as_bytes());
            if let Some(cn) = &tls.client_cn {
                push(&mut value, SSL_CN, cn.as_bytes());
            }
            push(&mut out, SSL, &value);
        }
        out
    }

    /// The TLVs this module writes, read back from the TLV part of a header (after the
    /// addresses); other types are skipped. `None` when the bytes do not walk as TLVs.
    pub fn parse(mut bytes: &[u8]) -> Option<Tlvs> {
        let mut tlvs = Tlvs::default();
        while !bytes.is_empty() {
            let (kind, value, rest) = next(bytes)?;
            bytes = rest;
            match kind {
                ALPN => tlvs.alpn = Some(value.to_vec()),
                AUTHORITY => tlvs.authority = Some(String::from_utf8_lossy(value).into_owned()),
                SSL => tlvs.tls = Some(parse_ssl(value)?),
                _ => {}
            }
        }
        Some(tlvs)
    }
}

fn parse_ssl(value: &[u8]) -> Option<Tls> {
    let (&client, rest) = value.split_first()?;
    let verify = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    let mut subs = &rest[4..];
    let mut tls = Tls {
        version: String::new(),
        client_verified: client & CLIENT_CERT_CONN != 0 && verify == 0,
        client_cn: None,
    };
    while !subs.is_empty() {
        let (kind, value, rest) = next(subs)?;
        subs = rest;
        let text = || String::from_utf8_lossy(value).into_owned();
        match kind {
            SSL_VERSION => tls.version = text(),
            SSL_CN => tls.client_cn = Some(text()),
            _ => {}
        }
    }
    Some(tls)
}

/// The first TLV of `bytes`: its type, its value and what follows it.
fn next(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&kind, rest) = bytes.split_first()?;
    let len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
    let value = rest.get(2..2 + len)?;
    Some((kind, value, &rest[2 + len..]))
}

fn push(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    let value = &value[..value.len().min(usize::from(u16::MAX))];
    out.push(kind);
    // At most u16::MAX by the line above.
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn text() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[a-zA-Z0-9.é-]{0,80}").expect("a regex")
    }

    proptest! {
        #[test]
        fn what_is_written_reads_back(
            authority in proptest::option::of(text()),
            alpn in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
            tls in proptest::option::of((text(), any::<bool>(), proptest::option::of(text()))),
        ) {
            let tlvs = Tlvs {
                authority,
                alpn,
                tls: tls.map(|(version, client_verified, client_cn)| Tls {
                    version,
                    client_verified,
                    client_cn,
                }),
            };
            prop_assert_eq!(Tlvs::parse(&tlvs.to_bytes()), Some(tlvs));
        }

        #[test]
        fn any_bytes_parse_or_are_refused_without_a_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let _ = Tlvs::parse(&bytes);
        }
    }

    #[test]
    fn the_bytes_of_haproxys_layout() {
        let tlvs = Tlvs {
            authority: Some("a.test".into()),
            alpn: None,
            tls: Some(Tls {
                version: "TLSv1.3".into(),
                client_verified: false,
                client_cn: None,
            }),
        };
        let mut wanted = vec![AUTHORITY, 0, 6];
        wanted.extend_from_slice(b"a.test");
        wanted.extend_from_slice(&[SSL, 0, 15, CLIENT_SSL, 0, 0, 0, 1, SSL_VERSION, 0, 7]);
        wanted.extend_from_slice(b"TLSv1.3");
        assert_eq!(tlvs.to_bytes(), wanted);
        assert_eq!(Tlvs::parse(&wanted), Some(tlvs));
    }

    #[test]
    fn unknown_types_are_skipped_and_broken_ones_refused() {
        let bytes = [0x04, 0, 2, 0, 0, AUTHORITY, 0, 1, b'x'];
        let parsed = Tlvs::parse(&bytes).expect("walks");
        assert_eq!(parsed.authority.as_deref(), Some("x"));
        assert_eq!(Tlvs::parse(&[AUTHORITY, 0, 5, b'x']), None);
        assert_eq!(Tlvs::parse(&[SSL, 0, 2, 1, 0]), None);
        assert!(Tlvs::parse(&[]).expect("nothing").is_empty());
    }
}
