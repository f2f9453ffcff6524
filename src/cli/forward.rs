//! `socketkit forward`: relay every accepted connection to a target.

use socketkit::forward::Forward;

use super::args::ForwardArgs;
use super::exit::CliError;
use super::{init_logging, resolve, server, tls};

pub(crate) fn run(args: ForwardArgs) -> Result<(), CliError> {
    if args.server.listen.is_empty() {
        return Err(CliError::Usage(
            "forward needs at least one -l ENDPOINT".into(),
        ));
    }
    let target = resolve::target("forward --to", &args.to)?;
    let timeout = args.timeout;
    let endpoints = server::endpoints(&args.server, "")?;
    if let Some(datagram) = endpoints.iter().find(|e| !e.transport().is_stream()) {
        return Err(CliError::Usage(format!(
            "forward relays streams only; {datagram} is a datagram endpoint"
        )));
    }
    let identity = args
        .to_tls_cert
        .to_tls_cert
        .clone()
        .zip(args.to_tls_cert.to_tls_key.clone());
    let connector = tls::client(&args.to_tls, identity, &args.tls_alpn, &target, false)?;
    let listener_tls = tls::server(&args.tls, &args.tls_alpn, &endpoints)?;
    tls::check_alpn_applies(
        &args.tls_alpn,
        connector.is_some() || listener_tls.is_some(),
    )?;
    let relay = match connector {
        Some(connector) => Forward::tls(target, connector),
        None => Forward::new(target),
    }
    .map_err(|err| CliError::Usage(err.to_string()))?
    .connect_timeout(timeout);
    let what = format!("forward to {}", relay.target());
    let mut builder = server::builder(&args.server, endpoints)?;
    if let Some(tls) = &listener_tls {
        tls.apply(&mut builder);
    }
    let access = server::access(&args.server, &mut builder)?;
    init_logging(&args.log);
    let workers = server::workers(&args.server);
    server::run(builder, &access, workers, &what, |server| {
        if let Some(tls) = &listener_tls {
            tls.announce();
        }
        tls::warn_if_insecure(&args.to_tls);
        server.serve(relay)
    })
}
