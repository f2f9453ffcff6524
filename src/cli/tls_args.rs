//! The TLS options' clap structs (SPEC §3.1), kept apart from `args` so each command
//! flattens the groups it takes; `tls` checks them and makes what they ask for.

use std::path::PathBuf;

use clap::Args;
use socketkit::tls::Fingerprint;

/// A listener's TLS: its certificate, client authentication, and handshake deadline.
#[derive(Debug, Args)]
pub(crate) struct TlsServerArgs {
    /// tls: listeners: the certificate chain, PEM (the server's own certificate first);
    /// repeated with --tls-key, several, chosen by the name a client asks for (SNI).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Vec<PathBuf>,
    /// tls: listeners: the private key of --tls-cert, PEM (PKCS#8, PKCS#1 or SEC1); one per
    /// --tls-cert, in the same order.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Vec<PathBuf>,
    /// tls: listeners: make a throwaway certificate for localhost and the listen addresses
    /// (its SHA-256 fingerprint is printed on stderr).
    #[arg(long, conflicts_with = "tls_cert")]
    pub(crate) tls_self_signed: bool,
    /// tls: listeners: require a client certificate signed by a CA in FILE (mutual TLS).
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_client_ca: Option<PathBuf>,
    /// tls: listeners, with --tls-client-ca: admit clients without a certificate too (one
    /// that is sent must still be signed by the CA).
    #[arg(long, requires = "tls_client_ca")]
    pub(crate) tls_client_optional: bool,
    /// tls: listeners: close a connection whose handshake has not finished in this long
    /// (with forward --sni-route, also how long a plain listener waits for the ClientHello).
    #[arg(long, value_name = "DURATION", default_value = "10s", allow_hyphen_values = true,
          value_parser = super::values::duration())]
    pub(crate) tls_handshake_timeout: std::time::Duration,
}

/// How a client verifies a tls: server.
#[derive(Debug, Args)]
pub(crate) struct TlsClientArgs {
    /// tls: targets: trust the CA certificates in FILE instead of the system's store.
    #[arg(long, value_name = "FILE", conflicts_with = "tls_insecure")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// tls: targets: accept exactly the server certificate with this SHA-256 fingerprint
    /// (AB:CD:…, as serve --tls-self-signed prints it), whatever its issuer and names.
    #[arg(long, value_name = "SHA256", conflicts_with_all = ["tls_insecure", "tls_ca"],
          value_parser = super::values::fingerprint())]
    pub(crate) tls_fingerprint: Option<Fingerprint>,
    /// tls: targets: the server name to ask for and verify (default: the endpoint's host).
    #[arg(long, value_name = "NAME")]
    pub(crate) tls_sni: Option<String>,
    /// tls: targets: do not verify the server's certificate (says so on stderr).
    #[arg(long)]
    pub(crate) tls_insecure: bool,
}

/// A client certificate for `connect` and `bench`.
#[derive(Debug, Args)]
pub(crate) struct TlsClientCertArgs {
    /// tls: present this client certificate chain, PEM, to servers that ask for one.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// tls: the private key of --tls-cert, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
}

/// A client certificate that `forward` presents to a tls: target.
#[derive(Debug, Args)]
pub(crate) struct TlsTargetCertArgs {
    /// tls: targets: present this client certificate chain, PEM.
    #[arg(long, value_name = "FILE", requires = "to_tls_key")]
    pub(crate) to_tls_cert: Option<PathBuf>,
    /// tls: targets: the private key of --to-tls-cert, PEM.
    #[arg(long, value_name = "FILE", requires = "to_tls_cert")]
    pub(crate) to_tls_key: Option<PathBuf>,
}

/// Everything a TLS client takes (`connect`, `bench`).
#[derive(Debug, Args)]
pub(crate) struct TlsConnectArgs {
    #[command(flatten)]
    pub(crate) verify: TlsClientArgs,
    #[command(flatten)]
    pub(crate) cert: TlsClientCertArgs,
    #[command(flatten)]
    pub(crate) alpn: TlsAlpnArgs,
}

/// Application protocols, on whichever side is TLS.
#[derive(Debug, Args)]
pub(crate) struct TlsAlpnArgs {
    /// Offer (client) or accept (server) this application protocol over TLS, e.g. h2 or
    /// http/1.1 (repeatable, in order of preference).
    #[arg(long, value_name = "PROTO")]
    pub(crate) tls_alpn: Vec<String>,
}
