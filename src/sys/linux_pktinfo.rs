//! A UDP socket bound to a wildcard address answering each datagram from the address it was
//! sent to: `recvmsg(2)` with `IP_PKTINFO`/`IPV6_PKTINFO` tells that address, `sendmsg(2)`
//! with the same control message sends from it (Linux's own; `fallback.rs` answers
//! `Unsupported`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};

use super::set_int_option;
use crate::sys::Destination;

/// Asks the kernel to tell, with each datagram the UDP socket `socket` receives, the local
/// address it was sent to ([`recv_with_destination`] reads it): `IP_PKTINFO` on an IPv4
/// socket; on an IPv6 one `IPV6_RECVPKTINFO`, and `IP_PKTINFO` as well for the IPv4 clients
/// of a dual-stack socket. Linux 6.18 tells those with either: `IPV6_PKTINFO` with the
/// IPv4-mapped address, and `IP_PKTINFO` too when asked (seen here); asking both does not
/// depend on which a given kernel gives.
pub(crate) fn ask_destinations(socket: BorrowedFd<'_>, ipv6: bool) -> io::Result<()> {
    let fd = socket.as_raw_fd();
    if ipv6 {
        set_int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
        // An IPv6-only socket has no IPv4 clients: its refusal, if any, changes nothing.
        let _ = set_int_option(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1);
        Ok(())
    } else {
        set_int_option(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
    }
}

/// Room for the control messages of one datagram: an `IP_PKTINFO` (12 bytes of data) and
/// an `IPV6_PKTINFO` (20), each after its header, with room to spare; aligned for
/// `cmsghdr`, as `CMSG_FIRSTHDR` expects.
#[repr(C, align(8))]
struct Control([u8; 128]);

/// One datagram from the UDP socket `socket` into `buf` (`recvmsg(2)`, waiting or not by
/// the socket's own `O_NONBLOCK`): its length, its sender, and the local address it was
/// sent to, when [`ask_destinations`] was asked first and the address can be answered from
/// (not a multicast group).
pub(crate) fn recv_with_destination(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<Destination>)> {
    let fd = socket.as_raw_fd();
    let mut control = Control([0; 128]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: try_init hands a zeroed sockaddr_storage and its length, which recvmsg fills
    // through `msg_name`; `iov` points at `buf` and `msg_control` at `control`, both live
    // and of the lengths given, and recvmsg writes no more than those. The control
    // messages are read only within the length recvmsg reported (see `destination_of`).
    let ((len, destination), peer) = unsafe {
        socket2::SockAddr::try_init(|storage, name_len| {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = storage.cast();
            msg.msg_namelen = *name_len;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.0.as_mut_ptr().cast();
            msg.msg_controllen = control.0.len() as _;
            let n = libc::recvmsg(fd, &mut msg, 0);
            let len = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
            *name_len = msg.msg_namelen;
            Ok((len, destination_of(&msg)))
        })
    }?;
    let peer = peer
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP sender"))?;
    Ok((len, peer, destination))
}

/// The local address the control messages of a received `msg` tell, `IP_PKTINFO`'s first:
/// its `ipi_spec_dst` is the address to answer from even for a broadcast, where
/// `IPV6_PKTINFO`'s IPv4-mapped `ipi6_addr` is the broadcast address itself.
///
/// # Safety
///
/// `msg` was filled by a successful `recvmsg(2)`: its `msg_control` and `msg_controllen`
/// describe live control messages.
unsafe fn destination_of(msg: &libc::msghdr) -> Option<Destination> {
    let (mut v4, mut v6) = (None, None);
    // SAFETY: the caller's promise; CMSG_FIRSTHDR and CMSG_NXTHDR stay within
    // `msg_controllen` and answer null past it.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: a non-null header from CMSG_FIRSTHDR/CMSG_NXTHDR lies whole in the buffer;
        // its data is read only when its length says it holds the whole struct, unaligned
        // since nothing promises the struct's alignment there.
        unsafe {
            let header = &*cmsg;
            let data = libc::CMSG_DATA(cmsg);
            let holds =
                |size: usize| header.cmsg_len as usize >= libc::CMSG_LEN(size as u32) as usize;
            match (header.cmsg_level, header.cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_PKTINFO) if holds(size_of::<libc::in_pktinfo>()) => {
                    let info: libc::in_pktinfo = std::ptr::read_unaligned(data.cast());
                    v4 = Some(Destination {
                        ip: IpAddr::V4(Ipv4Addr::from(info.ipi_spec_dst.s_addr.to_ne_bytes())),
                        interface: u32::try_from(info.ipi_ifindex).unwrap_or(0),
                    });
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO)
                    if holds(size_of::<libc::in6_pktinfo>()) =>
                {
                    let info: libc::in6_pktinfo = std::ptr::read_unaligned(data.cast());
                    let ip = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                    v6 = Some(Destination {
                        ip: ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4),
                        interface: info.ipi6_ifindex,
                    });
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    v4.or(v6)
        .filter(|found| !found.ip.is_unspecified() && !found.ip.is_multicast())
}

/// Sends `data` to `peer` on the UDP socket `socket` from the local address `from`
/// (`sendmsg(2)` with `IP_PKTINFO`'s `ipi_spec_dst`, or `IPV6_PKTINFO`'s `ipi6_addr`),
/// whatever address the socket is bound to: the answer to a datagram goes out from the
/// address it came to. An IPv4 `from` is for an IPv4 peer, or an IPv4-mapped one on a
/// dual-stack socket (Linux takes `IP_PKTINFO` there too). Waits or not by the socket's own
/// `O_NONBLOCK`.
pub(crate) fn send_from(
    socket: BorrowedFd<'_>,
    data: &[u8],
    peer: &SocketAddr,
    from: &Destination,
) -> io::Result<usize> {
    let fd = socket.as_raw_fd();
    let peer = socket2::SockAddr::from(*peer);
    let mut control = Control([0; 128]);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    let (level, kind, size) = match from.ip {
        IpAddr::V4(_) => (
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            size_of::<libc::in_pktinfo>(),
        ),
        IpAddr::V6(_) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_PKTINFO,
            size_of::<libc::in6_pktinfo>(),
        ),
    };
    // SAFETY: `msg` points at `peer`, `iov` (over `data`, which sendmsg only reads) and
    // `control`, all live across the call with their lengths given. The one control
    // message is written at CMSG_FIRSTHDR of a buffer of at least CMSG_SPACE(size) bytes
    // (at most 40 of its 128), aligned for its header; its data is written unaligned.
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = peer.as_ptr().cast_mut().cast();
        msg.msg_namelen = peer.len();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(size as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = level;
        (*cmsg).cmsg_type = kind;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size as u32) as _;
        let data = libc::CMSG_DATA(cmsg);
        match from.ip {
            IpAddr::V4(ip) => std::ptr::write_unaligned(
                data.cast(),
                libc::in_pktinfo {
                    // The route to the peer picks the interface.
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from_ne_bytes(ip.octets()),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                },
            ),
            IpAddr::V6(ip) => std::ptr::write_unaligned(
                data.cast(),
                libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: ip.octets(),
                    },
                    // A link-local address means something only on its own link; any other
                    // goes out where the route to the peer says.
                    ipi6_ifindex: if ip.is_unicast_link_local() {
                        from.interface
                    } else {
                        0
                    },
                },
            ),
        }
        libc::sendmsg(fd, &msg, 0)
    };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}
