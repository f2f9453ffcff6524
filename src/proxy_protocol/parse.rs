//! Parsing PROXY headers from the front of a buffer, v1 and v2, incrementally.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{PREAMBLE, Parsed, ProxyError, ProxyHeader, Tlvs, V2_SIGNATURE};

/// The longest v1 header the specification allows, CR LF included.
pub const MAX_V1_LEN: usize = 107;

/// The longest v2 header accepted: the 16-byte preamble and up to 2,032 bytes of addresses
/// and TLVs. The format allows 64 KiB; HAProxy's own TLVs fit easily, and a bound keeps a
/// peer from parking 64 KiB per connection before it is even admitted.
pub const MAX_V2_LEN: usize = 2048;

const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// Parses a PROXY header (v1 or v2) at the start of `bytes`.
///
/// # Errors
///
/// [`ProxyError`] when the bytes cannot be the start of a valid header.
///
/// # Examples
///
/// ```
/// use socketkit::proxy_protocol::{Parsed, ProxyHeader, parse};
/// let bytes = b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\nGET /";
/// let Parsed::Complete { header, len } = parse(bytes)? else { unreachable!() };
/// assert_eq!(&bytes[len..], b"GET /");
/// let ProxyHeader::Proxied { source, .. } = header else { unreachable!() };
/// assert_eq!(source.to_string(), "192.0.2.1:56324");
/// assert_eq!(parse(b"PROXY TCP4 192.0")?, Parsed::Incomplete);
/// # Ok::<(), socketkit::proxy_protocol::ProxyError>(())
/// ```
pub fn parse(bytes: &[u8]) -> Result<Parsed, ProxyError> {
    if starts_like(bytes, V2_SIGNATURE) {
        if bytes.len() < V2_SIGNATURE.len() {
            return Ok(Parsed::Incomplete);
        }
        return parse_v2(bytes);
    }
    if starts_like(bytes, V1_PREFIX) {
        if bytes.len() < V1_PREFIX.len() {
            return Ok(Parsed::Incomplete);
        }
        return parse_v1(bytes);
    }
    Err(ProxyError::Missing)
}

/// Whether `bytes` and `prefix` agree on their common length.
fn starts_like(bytes: &[u8], prefix: &[u8]) -> bool {
    let n = bytes.len().min(prefix.len());
    bytes[..n] == prefix[..n]
}

fn parse_v1(bytes: &[u8]) -> Result<Parsed, ProxyError> {
    let window = &bytes[..bytes.len().min(MAX_V1_LEN)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        if window.len() >= MAX_V1_LEN {
            return Err(ProxyError::TooLong(MAX_V1_LEN));
        }
        if window.contains(&b'\n') {
            return Err(ProxyError::V1("line ends without CR"));
        }
        return Ok(Parsed::Incomplete);
    };
    match window.get(cr + 1) {
        // Its LF would be one byte past the longest header.
        None if cr + 2 > MAX_V1_LEN => return Err(ProxyError::TooLong(MAX_V1_LEN)),
        None => return Ok(Parsed::Incomplete),
        Some(b'\n') => {}
        Some(_) => return Err(ProxyError::V1("CR not followed by LF")),
    }
    let len = cr + 2;
    // "the receiver must ignore anything presented before the CRLF" after UNKNOWN.
    let rest = &window[V1_PREFIX.len()..cr];
    if rest == b"UNKNOWN" || rest.starts_with(b"UNKNOWN ") {
        return Ok(Parsed::Complete {
            header: ProxyHeader::Local,
            len,
        });
    }
    let line = std::str::from_utf8(rest).map_err(|_| ProxyError::V1("not ASCII"))?;
    let mut fields = line.split(' ');
    let header = match fields.next() {
        Some("UNKNOWN") => ProxyHeader::Local,
        Some(proto @ ("TCP4" | "TCP6")) => {
            let v4 = proto == "TCP4";
            let mut next = || fields.next().ok_or(ProxyError::V1("missing field"));
            let (src, dst, sport, dport) = (next()?, next()?, next()?, next()?);
            if fields.next().is_some() {
                return Err(ProxyError::V1("extra field"));
            }
            let source = SocketAddr::new(v1_address(src, v4)?, v1_port(sport)?);
            let destination = SocketAddr::new(v1_address(dst, v4)?, v1_port(dport)?);
            ProxyHeader::Proxied {
                source,
                destination,
            }
        }
        _ => return Err(ProxyError::V1("protocol must be TCP4, TCP6 or UNKNOWN")),
    };
    Ok(Parsed::Complete { header, len })
}

fn v1_address(text: &str, v4: bool) -> Result<IpAddr, ProxyError> {
    let parsed = if v4 {
        text.parse::<Ipv4Addr>().map(IpAddr::V4)
    } else {
        text.parse::<Ipv6Addr>().map(IpAddr::V6)
    };
    parsed.map_err(|_| ProxyError::V1("bad address"))
}

fn v1_port(text: &str) -> Result<u16, ProxyError> {
    // The specification forbids leading zeros and signs; u16::from_str would take "+80".
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let canonical = text == "0" || !text.starts_with('0');
    if !(digits_only && canonical) {
        return Err(ProxyError::V1("bad port"));
    }
    text.parse().map_err(|_| ProxyError::V1("bad port"))
}

fn parse_v2(bytes: &[u8]) -> Result<Parsed, ProxyError> {
    if bytes.len() < PREAMBLE {
        // Check what is there already, so garbage fails as soon as it shows.
        if let Some(&version_command) = bytes.get(12) {
            version_and_command(version_command)?;
        }
        return Ok(Parsed::Incomplete);
    }
    let local = version_and_command(bytes[12])?;
    let family = bytes[13];
    let body = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    let len = PREAMBLE + body;
    if len > MAX_V2_LEN {
        return Err(ProxyError::TooLong(MAX_V2_LEN));
    }
    if bytes.len() < len {
        return Ok(Parsed::Incomplete);
    }
    if local {
        // "The receiver must accept this connection as valid and must use the real
        // connection endpoints and discard the protocol block including the family."
        return Ok(Parsed::Complete {
            header: ProxyHeader::Local,
            len,
        });
    }
    // Only these are defined; "other values … must be rejected as invalid by receivers".
    if !matches!(family, 0x00 | 0x11 | 0x12 | 0x21 | 0x22 | 0x31 | 0x32) {
        return Err(ProxyError::V2(
            "unknown address family or transport protocol",
        ));
    }
    let body = &bytes[PREAMBLE..len];
    let (addresses, tlvs) = split(body, address_len(family)?)?;
    let addresses = match family >> 4 {
        0x1 => Some(v4_pair(addresses)),
        0x2 => Some(v6_pair(addresses)),
        // UNSPEC, and AF_UNIX's paths: no IP address to speak of.
        _ => None,
    };
    check_tlvs(tlvs)?;
    let header = match addresses {
        Some((source, destination)) => ProxyHeader::Proxied {
            source,
            destination,
        },
        _ => ProxyHeader::Local,
    };
    Ok(Parsed::Complete { header, len })
}

/// The TLVs of the complete v2 header at the start of `bytes` ([`Tlvs`]: the server name,
/// ALPN and TLS session a proxy passed on); `None` when it is not one.
pub fn v2_tlvs(bytes: &[u8]) -> Option<Tlvs> {
    if !bytes.starts_with(V2_SIGNATURE) {
        return None;
    }
    let Ok(Parsed::Complete { len, .. }) = parse(bytes) else {
        return None;
    };
    let body = bytes.get(PREAMBLE..len)?;
    Tlvs::parse(body.get(address_len(bytes[13]).ok()?..)?)
}

/// How many bytes of a v2 header's body the addresses of `family` take (its high nibble:
/// UNSPEC, IPv4, IPv6, AF_UNIX); the TLVs follow them.
fn address_len(family: u8) -> Result<usize, ProxyError> {
    match family >> 4 {
        0x0 => Ok(0),
        0x1 => Ok(12),
        0x2 => Ok(36),
        0x3 => Ok(216),
        _ => Err(ProxyError::V2("unknown address family")),
    }
}

/// Whether the command is LOCAL (true) or PROXY (false), after checking the version is 2.
fn version_and_command(byte: u8) -> Result<bool, ProxyError> {
    if byte >> 4 != 2 {
        return Err(ProxyError::V2("version must be 2"));
    }
    match byte & 0x0f {
        0 => Ok(true),
        1 => Ok(false),
        _ => Err(ProxyError::V2("command must be LOCAL or PROXY")),
    }
}

fn split(body: &[u8], at: usize) -> Result<(&[u8], &[u8]), ProxyError> {
    if body.len() < at {
        return Err(ProxyError::V2("addresses longer than the header"));
    }
    Ok(body.split_at(at))
}

fn v4_pair(a: &[u8]) -> (SocketAddr, SocketAddr) {
    let ip = |i: usize| IpAddr::V4(Ipv4Addr::new(a[i], a[i + 1], a[i + 2], a[i + 3]));
    let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
    (
        SocketAddr::new(ip(0), port(8)),
        SocketAddr::new(ip(4), port(10)),
    )
}

fn v6_pair(a: &[u8]) -> (SocketAddr, SocketAddr) {
    let ip = |i: usize| {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&a[i..i + 16]);
        IpAddr::V6(Ipv6Addr::from(octets))
    };
    let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
    (
        SocketAddr::new(ip(0), port(32)),
        SocketAddr::new(ip(16), port(34)),
    )
}

/// Walks the TLVs (type, 16-bit length, value) to check each fits; their content is ignored.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyError> {
    while !tlvs.is_empty() {
        if tlvs.len() < 3 {
            return Err(ProxyError::V2("truncated TLV"));
        }
        let len = usize::from(u16::from_be_bytes([tlvs[1], tlvs[2]]));
        tlvs = tlvs
            .get(3 + len..)
            .ok_or(ProxyError::V2("TLV longer than the header"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{encode_v1, encode_v2};
    use super::*;

    fn complete(bytes: &[u8]) -> (ProxyHeader, usize) {
        match parse(bytes) {
            Ok(Parsed::Complete { header, len }) => (header, len),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
        }
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("a socket address")
    }

    #[test]
    fn v1_tcp4_tcp6_and_unknown() {
        let (header, len) = complete(b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\nrest");
        assert_eq!(len, 36);
        assert_eq!(
            header,
            ProxyHeader::Proxied {
                source: addr("[2001:db8::1]:1"),
                destination: addr("[::1]:65535"),
            }
        );
        assert_eq!(complete(b"PROXY UNKNOWN\r\n"), (ProxyHeader::Local, 15));
        assert_eq!(
            complete(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").0,
            ProxyHeader::Local
        );
        // After UNKNOWN, whatever comes before the CRLF is ignored, bytes that are not
        // ASCII too.
        assert_eq!(
            complete(b"PROXY UNKNOWN \xff\xfe\r\n"),
            (ProxyHeader::Local, 18)
        );
    }

    #[test]
    fn v1_faults_are_errors() {
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 80\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 80 81 82\r\n",
            b"PROXY TCP4 ::1 ::1 80 81\r\n",
            b"PROXY TCP6 1.2.3.4 5.6.7.8 80 81\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 080 81\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 81\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 81\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 80 81\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 80 81\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 80 81\rX",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
        assert_eq!(parse(&long), Err(ProxyError::TooLong(MAX_V1_LEN)));
        // A CR as the 107th byte: its LF would make 108, too long already (it waited for
        // the LF, then for the header timeout).
        let mut cr_last = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 92]].concat();
        cr_last.push(b'\r');
        assert_eq!(cr_last.len(), MAX_V1_LEN);
        assert_eq!(parse(&cr_last), Err(ProxyError::TooLong(MAX_V1_LEN)));
    }

    #[test]
    fn v2_local_unspec_unix_and_tlvs() {
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(complete(&local), (ProxyHeader::Local, 16));
        // PROXY over TCP4 with a 5-byte TLV (type 0x01 ALPN "h2" and padding).
        let mut tlv = encode_v2(addr("10.0.0.1:1000"), addr("10.0.0.2:443"));
        tlv[15] += 5;
        tlv.extend_from_slice(&[0x01, 0, 2, b'h', b'2']);
        assert_eq!(complete(&tlv).1, 16 + 12 + 5);
        // A TLV running past the header's end.
        let mut bad = encode_v2(addr("10.0.0.1:1000"), addr("10.0.0.2:443"));
        bad[15] += 3;
        bad.extend_from_slice(&[0x01, 0, 9]);
        assert_eq!(
            parse(&bad),
            Err(ProxyError::V2("TLV longer than the header"))
        );
        // A LOCAL header with addresses keeps the connection's own address.
        let mut local_with = encode_v2(addr("10.0.0.1:1000"), addr("10.0.0.2:443"));
        local_with[12] = 0x20;
        assert_eq!(complete(&local_with).0, ProxyHeader::Local);
        // LOCAL is accepted whatever its block says: the family is ignored, and the
        // addresses and TLVs with it.
        for (family, body) in [(0x41, &[][..]), (0x11, &[][..]), (0x21, &[0x01, 0, 9][..])] {
            let mut odd = V2_SIGNATURE.to_vec();
            odd.extend_from_slice(&[0x20, family, 0, u8::try_from(body.len()).unwrap_or(0)]);
            odd.extend_from_slice(body);
            assert_eq!(complete(&odd), (ProxyHeader::Local, 16 + body.len()));
        }
    }

    #[test]
    fn v2_faults_are_errors() {
        let good = encode_v2(addr("10.0.0.1:1000"), addr("10.0.0.2:443"));
        let mut version = good.clone();
        version[12] = 0x11;
        assert!(
            parse(&version[..13]).is_err(),
            "a bad version fails before the rest"
        );
        let mut command = good.clone();
        command[12] = 0x22;
        assert!(parse(&command).is_err());
        // Only 0x00, 0x11, 0x12, 0x21, 0x22, 0x31 and 0x32 are defined: the others are
        // refused, even with a nibble that means something on its own (0x10: IPv4, UNSPEC).
        for odd in [0x41, 0x10, 0x01, 0x20, 0x13, 0x23] {
            let mut family = good.clone();
            family[13] = odd;
            assert!(parse(&family).is_err(), "family {odd:#04x}");
        }
        let mut short = good.clone();
        short[15] = 4; // claims 4 bytes, but TCP4 addresses need 12
        assert!(parse(&short[..20]).is_err());
        let mut huge = good;
        huge[14] = 0xff;
        assert_eq!(parse(&huge), Err(ProxyError::TooLong(MAX_V2_LEN)));
    }

    fn any_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        ]
    }

    /// An address as a header carries it when the other side is of the other family.
    fn as_v6_if(addr: SocketAddr, mixed: bool) -> SocketAddr {
        match addr {
            SocketAddr::V4(v4) if mixed => {
                SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
            }
            other => other,
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_never_claims_more_than_it_was_given(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(Parsed::Complete { len, .. }) = parse(&bytes) {
                prop_assert!(len <= bytes.len());
            }
        }

        #[test]
        fn signatures_followed_by_anything_never_panic(v2 in any::<bool>(), tail in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut bytes = if v2 { V2_SIGNATURE.to_vec() } else { V1_PREFIX.to_vec() };
            bytes.extend_from_slice(&tail);
            if let Ok(Parsed::Complete { len, .. }) = parse(&bytes) {
                prop_assert!(len <= bytes.len());
            }
        }

        #[test]
        fn encoded_headers_parse_back_whole_and_leave_what_follows(
            source in any_addr(),
            destination in any_addr(),
            v2 in any::<bool>(),
            rest in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let header = if v2 { encode_v2(source, destination) } else { encode_v1(source, destination) };
            let mut bytes = header.clone();
            bytes.extend_from_slice(&rest);
            let mixed = source.is_ipv4() != destination.is_ipv4();
            let want = ProxyHeader::Proxied {
                source: as_v6_if(source, mixed),
                destination: as_v6_if(destination, mixed),
            };
            prop_assert_eq!(parse(&bytes), Ok(Parsed::Complete { header: want, len: header.len() }));
            // Every proper prefix is a valid beginning: a header split across many writes.
            for cut in 0..header.len() {
                prop_assert_eq!(parse(&header[..cut]), Ok(Parsed::Incomplete), "cut at {}", cut);
            }
        }
    }
}
