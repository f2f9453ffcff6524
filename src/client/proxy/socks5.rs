//! The SOCKS5 handshake (RFC 1928), with RFC 1929's user name and password, as steps for a
//! driver ([`super::Step`]): a greeting that offers what we can do, the chosen method's
//! exchange, then `CONNECT` and the proxy's reply, read to its last byte so that the
//! target's first bytes stay in the socket.

use std::io;
use std::net::IpAddr;

use super::{Credentials, Receive, Step};
use crate::endpoint::{Host, HostPort};

const VERSION: u8 = 5;
const NO_AUTHENTICATION: u8 = 0;
const USER_PASSWORD: u8 = 2;
const NO_ACCEPTABLE_METHOD: u8 = 0xFF;
const CONNECT: u8 = 1;
const IPV4: u8 = 1;
const DOMAIN_NAME: u8 = 3;
const IPV6: u8 = 4;

/// A SOCKS5 handshake for one target.
pub(super) struct Socks5<'a> {
    target: &'a HostPort,
    credentials: Option<&'a Credentials>,
    state: State,
}

/// What the last step asked the proxy for.
enum State {
    Start,
    /// The greeting went: its answer is the method the proxy chose.
    Greeted,
    /// The user name and password went: the answer is the verdict.
    Authenticated,
    /// `CONNECT` went: the answer is the reply's first four bytes.
    Requested,
    /// The reply's bound address is a name: this byte is its length.
    NameLength {
        reply: u8,
    },
    /// The reply's bound address and port, read to be out of the way.
    Bound {
        reply: u8,
    },
}

impl<'a> Socks5<'a> {
    pub(super) fn new(target: &'a HostPort, credentials: Option<&'a Credentials>) -> Self {
        Socks5 {
            target,
            credentials,
            state: State::Start,
        }
    }

    /// The next step, given what the last one received.
    pub(super) fn next(&mut self, received: &[u8]) -> io::Result<Step> {
        let (step, state) = match (&self.state, received) {
            (State::Start, _) => {
                let offered: &[u8] = match self.credentials {
                    Some(_) => &[NO_AUTHENTICATION, USER_PASSWORD],
                    None => &[NO_AUTHENTICATION],
                };
                let greeting = [&[VERSION, offered.len() as u8][..], offered].concat();
                (exchange(greeting, 2), State::Greeted)
            }
            (State::Greeted, &[version, method]) => {
                check_version(version)?;
                match (method, self.credentials) {
                    (NO_AUTHENTICATION, _) => (exchange(self.request()?, 4), State::Requested),
                    (USER_PASSWORD, Some(credentials)) => (
                        exchange(authentication(credentials), 2),
                        State::Authenticated,
                    ),
                    (NO_ACCEPTABLE_METHOD, credentials) => {
                        return Err(io::Error::new(
                            io::ErrorKind::PermissionDenied,
                            match credentials {
                                None => {
                                    "the proxy wants a user name and password \
                                         (socks5://USER:PASSWORD@HOST)"
                                }
                                Some(_) => {
                                    "the proxy takes none of the ways to \
                                            authenticate offered to it"
                                }
                            },
                        ));
                    }
                    (other, _) => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("the proxy chose method {other}, which was not offered"),
                        ));
                    }
                }
            }
            (State::Authenticated, &[_, status]) => {
                if status != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        "the proxy refused the user name and password",
                    ));
                }
                (exchange(self.request()?, 4), State::Requested)
            }
            (State::Requested, &[version, reply, _reserved, kind]) => {
                check_version(version)?;
                match kind {
                    IPV4 => (receive(4 + 2), State::Bound { reply }),
                    IPV6 => (receive(16 + 2), State::Bound { reply }),
                    DOMAIN_NAME => (receive(1), State::NameLength { reply }),
                    other => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("the proxy's reply has an unknown address type {other}"),
                        ));
                    }
                }
            }
            (&State::NameLength { reply }, &[len]) => {
                (receive(usize::from(len) + 2), State::Bound { reply })
            }
            (&State::Bound { reply }, _) => {
                return match reply {
                    0 => Ok(Step::Done),
                    code => Err(refusal(code)),
                };
            }
            // A driver hands each step exactly what it asked for.
            _ => {
                return Err(io::Error::other(
                    "a SOCKS5 step got what it did not ask for",
                ));
            }
        };
        self.state = state;
        Ok(step)
    }

    /// `CONNECT` to the target: its kind, the address or the name, the port.
    fn request(&self) -> io::Result<Vec<u8>> {
        let address = match &self.target.host {
            Host::Ip(IpAddr::V4(v4)) => [&[IPV4][..], &v4.octets()].concat(),
            Host::Ip(IpAddr::V6(v6)) => [&[IPV6][..], &v6.octets()].concat(),
            Host::Name(name) => {
                // Host names are at most 253 bytes (the endpoint's parser says so).
                let len = u8::try_from(name.len()).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, "the host name is too long")
                })?;
                [&[DOMAIN_NAME, len][..], name.as_bytes()].concat()
            }
            Host::Any => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a host is needed to connect (as in 127.0.0.1:PORT)",
                ));
            }
        };
        Ok([
            &[VERSION, CONNECT, 0][..],
            &address,
            &self.target.port.to_be_bytes(),
        ]
        .concat())
    }
}

/// RFC 1929's message: the user name and the password, each after its length (at most 255,
/// checked where the URL is read).
fn authentication(credentials: &Credentials) -> Vec<u8> {
    [
        &[1, credentials.user.len() as u8][..],
        &credentials.user,
        &[credentials.password.len() as u8],
        &credentials.password,
    ]
    .concat()
}

fn exchange(send: Vec<u8>, receive: usize) -> Step {
    Step::Exchange {
        send,
        then: Receive::Exactly(receive),
    }
}

fn receive(n: usize) -> Step {
    exchange(Vec::new(), n)
}

fn check_version(version: u8) -> io::Result<()> {
    if version == VERSION {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "the proxy does not speak SOCKS5",
    ))
}

/// A reply other than success, in words, with the kind of error a direct connect would
/// have met.
fn refusal(code: u8) -> io::Error {
    let (kind, words) = match code {
        1 => (io::ErrorKind::Other, "general failure"),
        2 => (io::ErrorKind::PermissionDenied, "not allowed by its rules"),
        3 => (io::ErrorKind::NetworkUnreachable, "network unreachable"),
        4 => (io::ErrorKind::HostUnreachable, "host unreachable"),
        5 => (io::ErrorKind::ConnectionRefused, "connection refused"),
        6 => (io::ErrorKind::TimedOut, "timed out"),
        7 => (io::ErrorKind::Unsupported, "CONNECT not supported"),
        8 => (io::ErrorKind::Unsupported, "address type not supported"),
        _ => (io::ErrorKind::Other, "unknown reply"),
    };
    io::Error::new(
        kind,
        format!("the proxy could not connect: {words} (SOCKS5 reply {code})"),
    )
}

/// Whether the target's next address might succeed where this reply refused one: an
/// unreachable or refusing address, or one of a family the proxy does not take.
pub(super) fn another_address_may_do(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::Unsupported
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_of(step: Step) -> (Vec<u8>, usize) {
        match step {
            Step::Exchange {
                send,
                then: Receive::Exactly(n),
            } => (send, n),
            _ => panic!("not an exchange of a byte count"),
        }
    }

    #[test]
    fn a_name_goes_to_the_proxy_and_a_named_bound_address_is_read_to_its_end() {
        let target = HostPort {
            host: Host::Name("example.org".into()),
            port: 443,
        };
        let mut handshake = Socks5::new(&target, None);
        assert_eq!(send_of(handshake.next(&[]).unwrap()), (vec![5, 1, 0], 2));
        let (request, n) = send_of(handshake.next(&[5, 0]).unwrap());
        assert_eq!(&request[..5], &[5, 1, 0, 3, 11]);
        assert_eq!(&request[5..16], b"example.org");
        assert_eq!((&request[16..], n), (&443u16.to_be_bytes()[..], 4));
        assert_eq!(send_of(handshake.next(&[5, 0, 0, 3]).unwrap()), (vec![], 1));
        assert_eq!(send_of(handshake.next(&[7]).unwrap()), (vec![], 9));
        assert!(matches!(handshake.next(b"relay.x\x01\xbb"), Ok(Step::Done)));
    }

    proptest::proptest! {
        /// Whatever a proxy answers, the steps never panic and end (done or an error) within
        /// the five a handshake has, each step given exactly what it asked for.
        #[test]
        fn prop_any_answer_ends_the_handshake_without_a_panic(
            answer in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            name in "[a-z]{1,20}",
            password in proptest::prelude::any::<bool>(),
        ) {
            let target = HostPort { host: Host::Name(name), port: 80 };
            let credentials = Credentials { user: b"u".to_vec(), password: b"p".to_vec() };
            let mut handshake = Socks5::new(&target, password.then_some(&credentials));
            let mut rest = &answer[..];
            let mut received = Vec::new();
            for _ in 0..6 {
                match handshake.next(&received) {
                    Ok(Step::Exchange { then: Receive::Exactly(n), .. }) if n <= rest.len() => {
                        received = rest[..n].to_vec();
                        rest = &rest[n..];
                    }
                    // Done, an error, or the proxy closed before the rest of its answer.
                    _ => return Ok(()),
                }
            }
            proptest::prop_assert!(false, "more steps than a handshake has");
        }
    }

    #[test]
    fn refusals_and_strangers_are_errors() {
        let target = HostPort {
            host: Host::Ip("10.0.0.1".parse().unwrap()),
            port: 80,
        };
        let mut refused = Socks5::new(&target, None);
        refused.next(&[]).unwrap();
        refused.next(&[5, 0]).unwrap();
        refused.next(&[5, 4, 0, 1]).unwrap();
        let err = refused.next(&[0; 6]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::HostUnreachable);
        assert!(another_address_may_do(&err));
        let mut stranger = Socks5::new(&target, None);
        stranger.next(&[]).unwrap();
        let err = stranger.next(b"HT").unwrap_err();
        assert_eq!(err.to_string(), "the proxy does not speak SOCKS5");
        let mut unoffered = Socks5::new(&target, None);
        unoffered.next(&[]).unwrap();
        assert!(
            unoffered.next(&[5, 2]).is_err(),
            "a password was not offered"
        );
    }
}
