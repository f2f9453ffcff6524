//! The TLS options (SPEC §3.1): their checks against the endpoints they apply to, and what
//! they make (the listeners' setup, the targets' connectors, their reloads). Their clap
//! structs are in `tls_args`. A file that does not parse is a usage error (exit 2), one that
//! cannot be read exit 1, both found before anything is bound.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use socketkit::endpoint::{Endpoint, Host};
use socketkit::forward::Forward;
use socketkit::metrics::Metrics;
use socketkit::server::Builder;
use socketkit::tls::{
    ClientOptions, Connector, Identity, ReloadableServerConfig, ServerOptions, Standing,
    client_config,
};

use super::exit::CliError;
pub(crate) use super::tls_args::{
    TlsAlpnArgs, TlsClientArgs, TlsConnectArgs, TlsServerArgs, TlsTargetCertArgs,
};

impl TlsConnectArgs {
    /// The connector for a `tls:` `target` (see [`client`]), with ALPN checked to apply.
    pub(crate) fn connector(
        &self,
        target: &Endpoint,
        full_handshakes: bool,
    ) -> Result<Option<Connector>, CliError> {
        let identity = self.cert.tls_cert.clone().zip(self.cert.tls_key.clone());
        let connector = client(&self.verify, identity, &self.alpn, target, full_handshakes)?;
        check_alpn_applies(&self.alpn, connector.is_some())?;
        Ok(connector)
    }
}

/// A checked server TLS setup.
pub(crate) struct ServerSetup {
    pub(crate) tls: Arc<ReloadableServerConfig>,
    pub(crate) handshake_timeout: Duration,
}

impl ServerSetup {
    /// Gives the builder the configuration and the handshake deadline.
    pub(crate) fn apply(&self, builder: &mut Builder) {
        builder
            .tls_reloadable(Arc::clone(&self.tls))
            .tls_handshake_timeout(self.handshake_timeout);
    }

    /// What SIGHUP does to the listeners' TLS: the certificate, key and client CA files
    /// read again for the handshakes to come (the new certificate's expiry recorded in
    /// `metrics`), or `None` when nothing comes from a file (a self-signed certificate is
    /// kept: clients may have pinned it).
    pub(crate) fn reload_on_hangup(
        &self,
        metrics: Option<Arc<Metrics>>,
    ) -> Option<impl Fn() -> bool + Send + Sync + 'static> {
        let tls = Arc::clone(&self.tls);
        tls.reads_files()
            .then_some(move || reload_and_say(&tls, metrics.as_deref()))
    }

    /// Records when each certificate in force expires in `metrics`.
    pub(crate) fn record_expiry(&self, metrics: &Metrics) {
        record_expiry(&self.tls, metrics);
    }

    /// Says what a self-signed certificate is, once the readiness lines are out.
    pub(crate) fn announce(&self) {
        warn_if_invalid(&self.tls);
        if let Some(made) = self.tls.self_signed() {
            let msg = format!(
                "tls: self-signed certificate for {}; SHA-256 fingerprint {}",
                made.names.join(", "),
                made.fingerprint
            );
            let names = made.names.iter().map(|name| name.as_str().into()).collect();
            super::log::notice(
                &msg,
                &[
                    ("fingerprint", made.fingerprint.to_string().into()),
                    ("names", serde_json::Value::Array(names)),
                ],
            );
        }
    }
}

/// The TLS of the listeners among `endpoints`, or `None` when none is `tls:`; options
/// given without a `tls:` listener are a usage error.
pub(crate) fn server(
    args: &TlsServerArgs,
    alpn: &TlsAlpnArgs,
    endpoints: &[Endpoint],
) -> Result<Option<ServerSetup>, CliError> {
    let tls: Vec<&Endpoint> = endpoints
        .iter()
        .filter(|e| matches!(e, Endpoint::Tls(_)))
        .collect();
    let Some(first) = tls.first() else {
        let given = [
            (!args.tls_cert.is_empty(), "--tls-cert"),
            (args.tls_self_signed, "--tls-self-signed"),
            (args.tls_client_ca.is_some(), "--tls-client-ca"),
        ];
        return match given.iter().find(|(set, _)| *set) {
            Some((_, flag)) => Err(only_for_tls(flag, "listener")),
            None => Ok(None),
        };
    };
    let (certs, keys) = (&args.tls_cert, &args.tls_key);
    if certs.len() != keys.len() {
        let count = |n: usize, what: &str| match n {
            1 => format!("1 {what}"),
            _ => format!("{n} {what}s"),
        };
        return Err(CliError::Usage(format!(
            "--tls-cert and --tls-key pair up in order: {} and {}",
            count(certs.len(), "certificate"),
            count(keys.len(), "key")
        )));
    }
    let identity = match (certs.as_slice(), keys.as_slice(), args.tls_self_signed) {
        ([cert], [key], _) => Identity::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        ([], _, true) => Identity::SelfSigned(self_signed_names(&tls)),
        ([], _, false) => {
            return Err(CliError::Usage(format!(
                "{first} needs --tls-cert FILE and --tls-key FILE (or --tls-self-signed)"
            )));
        }
        _ => Identity::ByName(certs.iter().cloned().zip(keys.iter().cloned()).collect()),
    };
    let options = ServerOptions {
        identity,
        client_ca: args.tls_client_ca.clone(),
        client_cert_optional: args.tls_client_optional,
        alpn: protocols(alpn)?,
    };
    let handshake_timeout = args.tls_handshake_timeout;
    let tls = ReloadableServerConfig::new(options).map_err(file_error)?;
    Ok(Some(ServerSetup {
        tls: Arc::new(tls),
        handshake_timeout,
    }))
}

/// A TLS file that does not parse is bad usage (exit 2); one that cannot be read — missing,
/// a directory, a device — or a system with no CA store (an image without ca-certificates),
/// a runtime failure (exit 1), as for every file an option names.
fn file_error(err: socketkit::Error) -> CliError {
    match err.kind() {
        std::io::ErrorKind::InvalidData => CliError::Usage(err.to_string()),
        _ => CliError::Failed(err.to_string()),
    }
}

/// Warns of each certificate in force that clients refuse (expired, not yet valid) or
/// soon will: rustls serves it all the same.
fn warn_if_invalid(tls: &ReloadableServerConfig) {
    let now = std::time::SystemTime::now();
    for (name, validity) in tls.certificates() {
        let Some(validity) = validity else {
            continue;
        };
        let until = humantime::format_rfc3339_seconds(validity.not_after);
        match validity.standing(now) {
            Standing::Valid => {}
            Standing::ExpiresSoon(left) => {
                let hours = left.as_secs() / 3600;
                let left = match hours {
                    0..48 => format!("{hours} hours"),
                    _ => format!("{} days", hours / 24),
                };
                tracing::warn!("TLS certificate {name} expires in {left} (valid until {until})");
            }
            Standing::Expired => tracing::warn!(
                "TLS certificate {name} has expired (valid until {until}): clients that verify it refuse the handshake"
            ),
            Standing::NotYetValid => tracing::warn!(
                "TLS certificate {name} is not valid yet (valid from {}): clients that verify it refuse the handshake",
                humantime::format_rfc3339_seconds(validity.not_before)
            ),
        }
    }
}

/// Records when each certificate in force expires in `metrics`.
fn record_expiry(tls: &ReloadableServerConfig, metrics: &Metrics) {
    for (name, validity) in tls.certificates() {
        if let Some(validity) = validity {
            metrics.tls_certificate_expiry(&name, validity.not_after);
        }
    }
}

/// SIGHUP's reload of a listener's TLS files, said on the log either way: whether the new
/// ones are in force.
fn reload_and_say(tls: &ReloadableServerConfig, metrics: Option<&Metrics>) -> bool {
    let options = tls.options();
    let pair =
        |(cert, key): (&PathBuf, &PathBuf)| format!("{} and {}", cert.display(), key.display());
    let from = match &options.identity {
        Identity::Files { cert, key } => pair((cert, key)),
        Identity::ByName(pairs) => {
            let pairs: Vec<String> = pairs.iter().map(|(cert, key)| pair((cert, key))).collect();
            pairs.join(", ")
        }
        Identity::SelfSigned(_) => "the self-signed certificate".to_owned(),
    };
    let from = match &options.client_ca {
        Some(ca) => format!("{from}, client CAs from {}", ca.display()),
        None => from,
    };
    match tls.reload() {
        Ok(()) => {
            tracing::info!("TLS certificate reloaded: {from}");
            warn_if_invalid(tls);
            if let Some(metrics) = metrics {
                record_expiry(tls, metrics);
            }
            true
        }
        Err(err) => {
            tracing::warn!("TLS certificate not reloaded, the old one stays: {err}");
            false
        }
    }
}

/// The connector for a `tls:` target, or `None` for another target; verification options
/// given for another target are a usage error. `full_handshakes` turns session resumption
/// off (bench).
pub(crate) fn client(
    args: &TlsClientArgs,
    identity: Option<(PathBuf, PathBuf)>,
    alpn: &TlsAlpnArgs,
    target: &Endpoint,
    full_handshakes: bool,
) -> Result<Option<Connector>, CliError> {
    Ok(target_tls(args, identity, alpn, target, full_handshakes)?.map(|tls| tls.connector))
}

/// A `tls:` target's connector, and the options it was made from (to make it again).
pub(crate) struct TargetTls {
    pub(crate) connector: Connector,
    options: ClientOptions,
}

impl TargetTls {
    /// What SIGHUP does to a relay's `tls:` targets: the CA file (or the system's store)
    /// and the client certificate read again for the handshakes to come; `None` when
    /// nothing is read (a pinned certificate, `--tls-insecure` without a client
    /// certificate).
    pub(crate) fn reload_on_hangup(
        &self,
        relay: Forward,
    ) -> Option<impl Fn() -> bool + Send + Sync + use<>> {
        let options = self.options.clone();
        let reads = options.identity.is_some() || (options.pin.is_none() && !options.insecure);
        reads.then_some(move || {
            let from = match (&options.ca, options.pin, options.insecure) {
                (Some(ca), _, _) => format!("CAs from {}", ca.display()),
                (None, None, false) => "the system's CAs".to_owned(),
                _ => "no CAs".to_owned(),
            };
            let from = match &options.identity {
                Some((cert, key)) => format!(
                    "{from}, client certificate {} and {}",
                    cert.display(),
                    key.display()
                ),
                None => from,
            };
            match client_config(&options) {
                Ok(config) => {
                    relay.reload_tls(config);
                    tracing::info!("target TLS reloaded: {from}");
                    true
                }
                Err(err) => {
                    tracing::warn!("target TLS not reloaded, the old one stays: {err}");
                    false
                }
            }
        })
    }
}

/// As [`client`], with the options kept.
pub(crate) fn target_tls(
    args: &TlsClientArgs,
    identity: Option<(PathBuf, PathBuf)>,
    alpn: &TlsAlpnArgs,
    target: &Endpoint,
    full_handshakes: bool,
) -> Result<Option<TargetTls>, CliError> {
    if !matches!(target, Endpoint::Tls(_)) {
        return refuse_client_options(args, identity.as_ref()).map(|()| None);
    }
    let options = ClientOptions {
        ca: args.tls_ca.clone(),
        insecure: args.tls_insecure,
        pin: args.tls_fingerprint,
        alpn: protocols(alpn)?,
        identity,
        full_handshakes,
    };
    let config = client_config(&options).map_err(file_error)?;
    let connector = Connector::new(config);
    let connector = match &args.tls_sni {
        Some(name) => connector
            .with_server_name(name)
            .map_err(|err| CliError::Usage(format!("invalid --tls-sni: {err}")))?,
        None => connector,
    };
    Ok(Some(TargetTls { connector, options }))
}

/// Refuses the options of a TLS client (a usage error) where there is no `tls:` target.
pub(crate) fn refuse_client_options(
    args: &TlsClientArgs,
    identity: Option<&(PathBuf, PathBuf)>,
) -> Result<(), CliError> {
    let given = [
        (args.tls_ca.is_some(), "--tls-ca"),
        (args.tls_fingerprint.is_some(), "--tls-fingerprint"),
        (args.tls_sni.is_some(), "--tls-sni"),
        (args.tls_insecure, "--tls-insecure"),
        (identity.is_some(), "a client certificate"),
    ];
    match given.iter().find(|(set, _)| *set) {
        Some((_, flag)) => Err(only_for_tls(flag, "target")),
        None => Ok(()),
    }
}

/// Says once that certificates go unchecked, when `--tls-insecure` is in force.
pub(crate) fn warn_if_insecure(args: &TlsClientArgs) {
    if args.tls_insecure {
        tracing::warn!("--tls-insecure: the server's certificate is not verified");
    }
}

/// Whether any ALPN protocol was given, for commands with no TLS side to use it.
pub(crate) fn check_alpn_applies(alpn: &TlsAlpnArgs, any_tls: bool) -> Result<(), CliError> {
    if !alpn.tls_alpn.is_empty() && !any_tls {
        return Err(only_for_tls("--tls-alpn", "endpoint"));
    }
    Ok(())
}

fn only_for_tls(flag: &str, what: &str) -> CliError {
    CliError::Usage(format!("{flag} applies to a tls: {what} only"))
}

fn protocols(alpn: &TlsAlpnArgs) -> Result<Vec<Vec<u8>>, CliError> {
    alpn.tls_alpn
        .iter()
        .map(|proto| {
            if proto.is_empty() || proto.len() > 255 {
                Err(CliError::Usage(format!(
                    "invalid --tls-alpn '{proto}': a protocol name is 1-255 bytes"
                )))
            } else {
                Ok(proto.as_bytes().to_vec())
            }
        })
        .collect()
}

/// `localhost`, every concrete host a `tls:` listener names, and for a wildcard listener
/// (every local address) the loopback addresses.
fn self_signed_names(endpoints: &[&Endpoint]) -> Vec<String> {
    let mut names = vec!["localhost".to_owned()];
    let mut add = |name: String| {
        if !names.contains(&name) {
            names.push(name);
        }
    };
    for endpoint in endpoints {
        match endpoint.host_port().map(|hp| &hp.host) {
            Some(Host::Ip(ip)) if !ip.is_unspecified() => add(ip.to_string()),
            Some(Host::Name(name)) => add(name.clone()),
            // Every local address: the loopback ones are those a certificate can name.
            _ => {
                add("127.0.0.1".to_owned());
                add("::1".to_owned());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_names_cover_localhost_and_the_listen_hosts() {
        let eps: Vec<Endpoint> = ["tls:127.0.0.2:0", "tls::0", "tls:myhost:1"]
            .iter()
            .map(|s| s.parse().expect("endpoint"))
            .collect();
        let refs: Vec<&Endpoint> = eps.iter().collect();
        assert_eq!(
            self_signed_names(&refs),
            ["localhost", "127.0.0.2", "127.0.0.1", "::1", "myhost"]
        );
    }
}
