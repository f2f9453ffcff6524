//! `socketkit listen`: a netcat listener on standard input and output.

use std::io::Write;

use socketkit::client::{self, BridgeEnd, BridgeOptions, Handshake, Input};
use socketkit::socket::Socket;

use super::access;
use super::args::ListenArgs;
use super::exit::CliError;
use super::tls::ServerSetup;
use super::{init_logging, ready, resolve, stdio, tls};

pub(crate) fn run(args: ListenArgs) -> Result<(), CliError> {
    let endpoint = resolve::endpoint(&args.endpoint)?;
    let datagrams = !endpoint.transport().is_stream();
    if datagrams && args.keep_open {
        return Err(CliError::Usage(
            "-k applies to stream endpoints only".into(),
        ));
    }
    let tls = tls::server(&args.tls, &args.tls_alpn, std::slice::from_ref(&endpoint))?;
    tls::check_alpn_applies(&args.tls_alpn, tls.is_some())?;
    let options = stdio::options(&args.bridge);
    let access = access::resolve(&args.access)?;
    init_logging(&args.log);
    let mut listening = client::listen(&endpoint)?;
    access.drop_privileges()?;
    ready::announce(std::slice::from_ref(listening.local_endpoint()), "listen");
    if let Some(tls) = &tls {
        tls.announce();
    }
    let input = stdio::input(datagrams)?;
    if datagrams {
        let (first, peer) = listening.first_datagram_from(|peer| match access.check(peer) {
            Ok(_) => true,
            Err(reason) => {
                tracing::debug!(%peer, reason = reason.as_str(), "dropped a datagram");
                false
            }
        })?;
        tracing::debug!("datagram from {peer}");
        if stdio::output()?.write_all(&first).is_err() {
            return Ok(()); // stdout is gone: nothing more is wanted
        }
        let options = BridgeOptions {
            peer: Some(peer),
            ..options
        };
        stdio::run(listening.socket_mut(), true, &input, options)?;
        return Ok(());
    }
    loop {
        let (socket, peer) = listening.accept()?;
        let _place = match access.check(&peer) {
            Ok(place) => place,
            Err(reason) => {
                tracing::debug!(%peer, reason = reason.as_str(), "refused");
                // A reset: the client is told at once and we keep no TIME_WAIT.
                let _ = socket.set_linger(Some(std::time::Duration::ZERO));
                continue;
            }
        };
        tracing::debug!("connection from {peer}");
        let options = BridgeOptions {
            peer: Some(peer),
            ..options.clone()
        };
        if !args.keep_open {
            // Close the listener before bridging, so a second client is refused rather
            // than left waiting in the backlog.
            drop(listening);
            bridge(socket, tls.as_ref(), &input, options)?;
            return Ok(());
        }
        match bridge(socket, tls.as_ref(), &input, options) {
            Ok(BridgeEnd::OutputClosed) => return Ok(()),
            Ok(BridgeEnd::PeerClosed) => {}
            Err(err) => tracing::warn!("{err}"),
        }
    }
}

/// Bridges one accepted stream, through a TLS handshake on a `tls:` listener.
fn bridge(
    mut socket: Socket,
    tls: Option<&ServerSetup>,
    input: &Input,
    options: BridgeOptions,
) -> Result<BridgeEnd, CliError> {
    match tls {
        Some(tls) => {
            let handshake = Handshake::Server {
                config: std::sync::Arc::clone(&tls.tls.config),
                timeout: tls.handshake_timeout,
            };
            stdio::run_tls(socket, handshake, input, options)
        }
        None => stdio::run(&mut socket, false, input, options),
    }
}
