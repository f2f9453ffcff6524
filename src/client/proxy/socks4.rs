//! The SOCKS4 handshake, and SOCKS4a's extension that hands the proxy a name (the de facto
//! protocol of NEC's SOCKS 4 and its 4A note; curl's and ncat's `socks4`), as steps for a
//! driver ([`super::Step`]): one `CONNECT` request, with the user name as its user id, and
//! the proxy's 8-byte reply. SOCKS4 carries IPv4 addresses only and has no password.

use std::io;
use std::net::IpAddr;

use super::{Credentials, Receive, Step};
use crate::endpoint::{Host, HostPort};

const VERSION: u8 = 4;
const CONNECT: u8 = 1;
/// The reply's version byte: 0, though some proxies echo 4.
const REPLY_VERSIONS: [u8; 2] = [0, 4];
const GRANTED: u8 = 0x5A;
const REJECTED: u8 = 0x5B;
const NO_IDENTD: u8 = 0x5C;
const IDENTD_DISAGREES: u8 = 0x5D;

/// A SOCKS4 (or, with `by_name`, SOCKS4a) handshake for one target.
pub(super) struct Socks4<'a> {
    target: &'a HostPort,
    credentials: Option<&'a Credentials>,
    by_name: bool,
    requested: bool,
}

impl<'a> Socks4<'a> {
    /// SOCKS4 when `by_name` is false (the target must be an IPv4 address), SOCKS4a when
    /// true (a name goes to the proxy as it is).
    pub(super) fn new(
        target: &'a HostPort,
        credentials: Option<&'a Credentials>,
        by_name: bool,
    ) -> Self {
        Socks4 {
            target,
            credentials,
            by_name,
            requested: false,
        }
    }

    /// The next step, given what the last one received.
    pub(super) fn next(&mut self, received: &[u8]) -> io::Result<Step> {
        if !self.requested {
            self.requested = true;
            return Ok(Step::Exchange {
                send: self.request()?,
                then: Receive::Exactly(8),
            });
        }
        let &[version, reply, ..] = received else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the proxy's SOCKS4 reply is short",
            ));
        };
        if !REPLY_VERSIONS.contains(&version) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the proxy does not speak SOCKS4 (reply version {version})"),
            ));
        }
        match reply {
            GRANTED => Ok(Step::Done),
            // SOCKS4 has one code for "refused by a rule" and "could not connect".
            REJECTED => Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "the proxy rejected the request or could not connect (SOCKS4 reply 91)",
            )),
            NO_IDENTD | IDENTD_DISAGREES => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "the proxy could not confirm the user id with identd (SOCKS4 reply {reply})"
                ),
            )),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the proxy answered an unknown SOCKS4 reply {other}"),
            )),
        }
    }

    /// `CONNECT`: version, command, port, address, the user id and its NUL; for a name
    /// (SOCKS4a), the address 0.0.0.1 and the name and its NUL after the user id.
    fn request(&self) -> io::Result<Vec<u8>> {
        let (address, name): ([u8; 4], Option<&str>) = match &self.target.host {
            Host::Ip(IpAddr::V4(ip)) => (ip.octets(), None),
            Host::Name(name) if self.by_name => ([0, 0, 0, 1], Some(name.as_str())),
            Host::Name(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "socks4:// takes an address (socks4a:// hands the proxy a name)",
                ));
            }
            Host::Ip(IpAddr::V6(_)) | Host::Any => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "SOCKS4 carries IPv4 addresses only",
                ));
            }
        };
        let user = self.credentials.map_or(&[][..], |c| c.user.as_slice());
        if user.contains(&0) || name.is_some_and(|name| name.contains('\0')) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a SOCKS4 user id or name cannot hold a NUL byte",
            ));
        }
        let mut request = vec![VERSION, CONNECT];
        request.extend_from_slice(&self.target.port.to_be_bytes());
        request.extend_from_slice(&address);
        request.extend_from_slice(user);
        request.push(0);
        if let Some(name) = name {
            request.extend_from_slice(name.as_bytes());
            request.push(0);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(text: &str) -> HostPort {
        match format!("tcp:{text}").parse() {
            Ok(crate::endpoint::Endpoint::Tcp(hp)) => hp,
            other => panic!("{other:?}"),
        }
    }

    fn request_of(step: Step) -> Vec<u8> {
        match step {
            Step::Exchange {
                send,
                then: Receive::Exactly(8),
            } => send,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_address_goes_as_socks4_and_a_name_as_socks4a() {
        let at = target("10.1.2.3:8080");
        let sent = request_of(Socks4::new(&at, None, false).next(&[]).unwrap());
        assert_eq!(sent, [4, 1, 0x1F, 0x90, 10, 1, 2, 3, 0]);
        let named = target("example.org:80");
        let sent = request_of(Socks4::new(&named, None, true).next(&[]).unwrap());
        assert_eq!(
            sent,
            [&[4, 1, 0, 80, 0, 0, 0, 1, 0][..], b"example.org\0"].concat()
        );
        let err = Socks4::new(&named, None, false).next(&[]).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let v6 = target("[::1]:80");
        let err = Socks4::new(&v6, None, true).next(&[]).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    }

    #[test]
    fn the_user_name_is_the_user_id() {
        let at = target("10.1.2.3:80");
        let credentials = Credentials {
            user: b"alice".to_vec(),
            password: Vec::new(),
        };
        let sent = request_of(
            Socks4::new(&at, Some(&credentials), false)
                .next(&[])
                .unwrap(),
        );
        assert_eq!(sent, [&[4, 1, 0, 80, 10, 1, 2, 3][..], b"alice\0"].concat());
    }

    #[test]
    fn replies_are_read_by_their_code() {
        let at = target("10.1.2.3:80");
        let answer = |reply: &[u8]| {
            let mut socks = Socks4::new(&at, None, false);
            socks.next(&[]).unwrap();
            socks.next(reply)
        };
        assert!(matches!(
            answer(&[0, 0x5A, 0, 0, 0, 0, 0, 0]),
            Ok(Step::Done)
        ));
        assert!(matches!(
            answer(&[4, 0x5A, 0, 0, 0, 0, 0, 0]),
            Ok(Step::Done)
        ));
        let kind = |reply: &[u8]| answer(reply).err().unwrap().kind();
        assert_eq!(
            kind(&[0, 0x5B, 0, 0, 0, 0, 0, 0]),
            io::ErrorKind::ConnectionRefused
        );
        assert_eq!(
            kind(&[0, 0x5C, 0, 0, 0, 0, 0, 0]),
            io::ErrorKind::PermissionDenied
        );
        assert_eq!(
            kind(&[5, 0x5A, 0, 0, 0, 0, 0, 0]),
            io::ErrorKind::InvalidData
        );
        assert_eq!(
            kind(&[0, 0x01, 0, 0, 0, 0, 0, 0]),
            io::ErrorKind::InvalidData
        );
    }
}
