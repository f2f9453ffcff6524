//! Writing PROXY headers, for a relay that speaks for its clients (`forward --send-proxy`).

use std::net::SocketAddr;

use super::{PREAMBLE, Tlvs, V2_SIGNATURE, Version};

/// The header `version` writes for a connection from `source` to `destination`; when either
/// is not an IP socket address (a Unix socket client), the header that says "no address"
/// (v1 `UNKNOWN`, v2 `LOCAL`), after which the receiver keeps the connection's own address.
///
/// # Examples
///
/// ```
/// use socketkit::proxy_protocol::{Version, encode};
/// let from = "192.0.2.1:5000".parse().ok();
/// let to = "192.0.2.2:80".parse().ok();
/// assert_eq!(encode(Version::V1, from, to), b"PROXY TCP4 192.0.2.1 192.0.2.2 5000 80\r\n");
/// assert_eq!(encode(Version::V1, from, None), b"PROXY UNKNOWN\r\n");
/// assert_eq!(encode(Version::V2, None, None).len(), 16);
/// ```
pub fn encode(
    version: Version,
    source: Option<SocketAddr>,
    destination: Option<SocketAddr>,
) -> Vec<u8> {
    match (version, source.zip(destination)) {
        (Version::V1, Some((s, d))) => encode_v1(s, d),
        (Version::V2, Some((s, d))) => encode_v2(s, d),
        (Version::V1, None) => b"PROXY UNKNOWN\r\n".to_vec(),
        // Command LOCAL, family and transport UNSPEC, no address block.
        (Version::V2, None) => [&V2_SIGNATURE[..], &[0x20, 0x00, 0, 0]].concat(),
    }
}

/// As [`encode`], and a v2 header carries `tlvs` after its addresses (a v1 header has no
/// room for them, and goes without).
///
/// # Examples
///
/// ```
/// use socketkit::proxy_protocol::{Tlvs, Version, encode_with, v2_tlvs};
/// let tlvs = Tlvs { authority: Some("shop.example.com".into()), ..Tlvs::default() };
/// let header = encode_with(Version::V2, "192.0.2.1:5000".parse().ok(), "192.0.2.2:443".parse().ok(), &tlvs);
/// assert_eq!(v2_tlvs(&header), Some(tlvs));
/// ```
pub fn encode_with(
    version: Version,
    source: Option<SocketAddr>,
    destination: Option<SocketAddr>,
    tlvs: &Tlvs,
) -> Vec<u8> {
    let mut header = encode(version, source, destination);
    if version == Version::V2 && !tlvs.is_empty() {
        header.extend_from_slice(&tlvs.to_bytes());
        // The length counts what follows the preamble; TLVs this module writes stay far
        // below 64 KiB (names, a protocol, a version).
        let body = u16::try_from(header.len() - PREAMBLE).unwrap_or(u16::MAX);
        header[14..16].copy_from_slice(&body.to_be_bytes());
    }
    header
}

/// A v1 (text) header for a connection from `source` to `destination`. Mixed families (an
/// IPv4 client of an IPv6 address) are written as IPv6, with the IPv4 side mapped.
///
/// # Examples
///
/// ```
/// use socketkit::proxy_protocol::encode_v1;
/// let header = encode_v1("192.0.2.1:5000".parse().unwrap(), "192.0.2.2:80".parse().unwrap());
/// assert_eq!(header, b"PROXY TCP4 192.0.2.1 192.0.2.2 5000 80\r\n");
/// ```
pub fn encode_v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let text = match same_family(source, destination) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            format!(
                "PROXY TCP4 {} {} {} {}\r\n",
                s.ip(),
                d.ip(),
                s.port(),
                d.port()
            )
        }
        (s, d) => format!(
            "PROXY TCP6 {} {} {} {}\r\n",
            v6(s),
            v6(d),
            s.port(),
            d.port()
        ),
    };
    text.into_bytes()
}

/// A v2 (binary) header, command PROXY, transport TCP, for a connection from `source` to
/// `destination` (mixed families as for [`encode_v1`]).
///
/// # Examples
///
/// ```
/// use socketkit::proxy_protocol::{Parsed, encode_v2, parse};
/// let (from, to) = ("[2001:db8::1]:5000".parse().unwrap(), "[2001:db8::2]:443".parse().unwrap());
/// let header = encode_v2(from, to);
/// assert_eq!(header.len(), 16 + 36);
/// assert!(matches!(parse(&header), Ok(Parsed::Complete { len: 52, .. })));
/// ```
pub fn encode_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.push(0x21); // version 2, command PROXY
    match same_family(source, destination) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            header.push(0x11);
            header.extend_from_slice(&12u16.to_be_bytes());
            header.extend_from_slice(&s.ip().octets());
            header.extend_from_slice(&d.ip().octets());
        }
        (s, d) => {
            header.push(0x21);
            header.extend_from_slice(&36u16.to_be_bytes());
            header.extend_from_slice(&v6(s).octets());
            header.extend_from_slice(&v6(d).octets());
        }
    }
    header.extend_from_slice(&source.port().to_be_bytes());
    header.extend_from_slice(&destination.port().to_be_bytes());
    header
}

/// Both addresses in one family: as they are when they agree, else both as IPv6.
/// The two addresses in one family: IPv4 when both are (an IPv4 client of a dual-stack
/// listener has IPv4-mapped addresses on both sides, and is written as the IPv4 connection
/// it is: `TCP4`, as the receiver's IPv4 rules expect), else IPv6 with the IPv4 side mapped.
fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canonical = |addr: SocketAddr| SocketAddr::new(addr.ip().to_canonical(), addr.port());
    let (a, b) = (canonical(a), canonical(b));
    if a.is_ipv4() == b.is_ipv4() {
        (a, b)
    } else {
        (
            SocketAddr::new(v6(a).into(), a.port()),
            SocketAddr::new(v6(b).into(), b.port()),
        )
    }
}

fn v6(addr: SocketAddr) -> std::net::Ipv6Addr {
    match addr {
        SocketAddr::V4(v4) => v4.ip().to_ipv6_mapped(),
        SocketAddr::V6(v6) => *v6.ip(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_client_of_a_dual_stack_listener_is_written_as_tcp4() {
        let from: SocketAddr = "[::ffff:192.0.2.1]:5000".parse().expect("address");
        let to: SocketAddr = "[::ffff:192.0.2.2]:80".parse().expect("address");
        assert_eq!(
            encode_v1(from, to),
            b"PROXY TCP4 192.0.2.1 192.0.2.2 5000 80\r\n"
        );
        assert_eq!(encode_v2(from, to)[13], 0x11, "v2: TCP over IPv4");
        // A real IPv6 side keeps the header IPv6, the other side mapped.
        let v6: SocketAddr = "[2001:db8::2]:80".parse().expect("address");
        assert_eq!(
            encode_v1(from, v6),
            b"PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 5000 80\r\n"
        );
    }
}
