//! The floor every networking part of socketkit stands on: the one place where an
//! [`Endpoint`] becomes sockets, and sockets become endpoints again. The server, the netcat
//! client, the relay and the load generator all go through it, and none of them reaches
//! into another.
//!
//! # Organization
//! - `bind`: [`bind_endpoint`] for every transport (`SO_REUSEADDR`, one dual-stack socket
//!   for `:PORT`), [`bind_reuse_port_set`] for `SO_REUSEPORT` sets, [`ListenOptions`],
//!   [`Bound`].
//! - `unix_file`: the Unix socket-file rules (stale files replaced, anything else left
//!   alone) and [`UnixFile`], the guard that removes a listener's file.
//! - `inherited`: `adopt`, a descriptor passed down by a parent (`fd:N`), checked;
//!   `passed`: where such descriptors come from (`LISTEN_FDS`, a restart's handover).
//! - `accept`: [`RawStream`], a connection taken off a listener and not yet given to tokio,
//!   and the sorting of accept errors.
//! - `stream`: [`Stream`], a connected TCP or Unix stream behind one type.
//! - `connect`: [`candidates`], [`connect_socket`] (blocking, with a timeout),
//!   [`connect_racing`] (blocking, a name's addresses raced) and [`connect_stream`] (async);
//!   `happy_eyeballs`: the race (RFC 8305) both use for a name with several addresses.
//! - `temp_path`: [`TempSocketPath`], the address a Unix datagram client binds.
//! - `udp_server`: [`ServerUdp`], a UDP socket that serves clients and, bound to a wildcard
//!   address, answers each from the address it sent to ([`Destination`]).
//! - `activity`: [`Activity`], when bytes last moved through a two-way mover.
//! - the platform calls the layers above need, from the crate's `sys` module (splice, pipes,
//!   `poll`, `IP_BIND_ADDRESS_NO_PORT`, `SIOCOUTQ`, and for the processes a server starts,
//!   handing descriptors down and signalling them): nothing above `net` calls `libc` itself.
//!
//! This module is the crate's own: its types are not part of the public API, which
//! `socket`, `server`, `client` and `forward` give.

mod accept;
mod activity;
mod bind;
mod blocking_pool;
mod connect;
mod datagram;
mod happy_eyeballs;
mod inherited;
mod lookup;
mod passed;
mod stream;
mod temp_path;
mod udp_server;
mod unix_file;

pub(crate) use accept::{
    RawStream, is_connection_error, is_resource_exhaustion, queued_connections,
};
pub use activity::sleep_running;
pub(crate) use activity::{
    Activity, OVERSLEPT, Touching, given_back, idle_error, is_idle_timeout, unless_idle,
    within_running,
};
pub(crate) use bind::{Bound, ListenOptions, bind_endpoint, bind_reuse_port_set};
pub(crate) use blocking_pool::{no_thread, on_blocking_pool};
pub(crate) use connect::{
    candidates, connect_racing, connect_socket, connect_stream, connect_unix, unix_address, within,
};
pub(crate) use datagram::{ConnectedDatagram, next_unix_datagram_len};
pub(crate) use happy_eyeballs::race_tcp;
pub(crate) use inherited::{adopt, adopt_connection, adopt_handed_over, speaking_tls};
pub(crate) use lookup::lookup;
pub(crate) use passed::{ListenerKind, handover_env, take_passed};
pub(crate) use stream::{
    Stream, close_with_reset, discard_unread, holds_bytes, reset_if_cut_short, reset_now,
};
pub(crate) use temp_path::TempSocketPath;
pub(crate) use udp_server::ServerUdp;
pub(crate) use unix_file::{UnixFile, UnixFileRemover};

pub(crate) use crate::sys::{
    Destination, Pipe, Readiness, ask_reload, ask_restart, descriptor_limit, grow_pipe,
    inherit_on_exec, is_blocking_pipe, is_pipe_or_socket, kill_process_group, peer_has_closed,
    peer_name, process_cpu_time, process_group_exists, raise_descriptor_limit,
    raise_with_default_action, reader_gone, reap_orphans, receive_queued, recv_nowait,
    reset_inherited_signals, send_descriptor, set_bind_address_no_port, set_defer_accept, splice,
    splice_unsupported, steer_reuseport_to_first, tcp_bytes_acked, tcp_bytes_received,
    tcp_send_window, terminate, thread_cpu_time, unacknowledged, unsteer_reuseport, wait_readable,
    wait_readable_watching, wait_writable,
};

use std::path::Path;

use crate::endpoint::{Endpoint, Host, HostPort, Transport};
use crate::socket::Address;

/// The endpoint of `transport` at a concrete socket address, as a listener reports it once
/// bound (`tcp:127.0.0.1:41234`). The transport decides stream or datagram; the address
/// decides IP or Unix.
pub(crate) fn endpoint_at(transport: Transport, address: &Address) -> Endpoint {
    if let Some(addr) = address.as_socket_addr() {
        let host = match addr {
            // A link-local address means nothing without its zone: keep it, so that the
            // `listening on` line can be used as it is written.
            std::net::SocketAddr::V6(v6)
                if v6.scope_id() != 0 && v6.ip().is_unicast_link_local() =>
            {
                Host::Name(format!("{}%{}", v6.ip(), v6.scope_id()))
            }
            _ => Host::Ip(addr.ip()),
        };
        let hp = HostPort {
            host,
            port: addr.port(),
        };
        return match transport {
            Transport::Udp | Transport::Unixgram => Endpoint::Udp(hp),
            Transport::Tls => Endpoint::Tls(hp),
            Transport::Tcp | Transport::Unix => Endpoint::Tcp(hp),
        };
    }
    let path = address.as_path().map(Path::to_path_buf).unwrap_or_default();
    match transport {
        Transport::Udp | Transport::Unixgram => Endpoint::Unixgram(path),
        Transport::Tcp | Transport::Tls | Transport::Unix => Endpoint::Unix(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_of_addresses_keep_the_transport_kind() {
        let ip = Address::from(std::net::SocketAddr::from(([127, 0, 0, 1], 4000)));
        assert_eq!(
            endpoint_at(Transport::Udp, &ip).to_string(),
            "udp:127.0.0.1:4000"
        );
        assert_eq!(
            endpoint_at(Transport::Unix, &ip).to_string(),
            "tcp:127.0.0.1:4000"
        );
        assert_eq!(
            endpoint_at(Transport::Tls, &ip).to_string(),
            "tls:127.0.0.1:4000"
        );
        let path = Address::unix("/run/app.sock");
        assert_eq!(
            endpoint_at(Transport::Tcp, &path).to_string(),
            "unix:/run/app.sock"
        );
        assert_eq!(
            endpoint_at(Transport::Unixgram, &path).to_string(),
            "unixgram:/run/app.sock"
        );
    }
}
