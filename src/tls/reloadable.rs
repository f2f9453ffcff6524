//! A server's TLS configuration that a running server can be given again: certificate
//! rotation without a restart. The configuration in force is swapped whole, so a handshake
//! sees the old certificate or the new, never a mix; sessions already established keep the
//! one they were made with. A reload that fails leaves the configuration in force.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;

use super::chain::Loaded;
use super::server::{Identity, SelfSigned, ServerOptions, build, identity};
use super::validity::Validity;
use crate::error::Result;

/// A server configuration built from [`ServerOptions`] whose files can be read again while
/// the server runs ([`ReloadableServerConfig::reload`]); give it to the server with
/// [`crate::server::Builder::tls_reloadable`].
///
/// # Examples
///
/// ```
/// use socketkit::tls::{Identity, ReloadableServerConfig, ServerOptions};
/// let dir = tempfile::tempdir()?;
/// let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
/// let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
/// std::fs::write(&cert, made.cert.pem())?;
/// std::fs::write(&key, made.key_pair.serialize_pem())?;
///
/// let tls = ReloadableServerConfig::new(ServerOptions::new(Identity::Files { cert: cert.clone(), key }))?;
/// let before = tls.current();
/// // The certificate is renewed: the next handshakes use the new one.
/// tls.reload()?;
/// assert!(!std::sync::Arc::ptr_eq(&before, &tls.current()));
/// // A file that no longer loads keeps the configuration in force.
/// std::fs::write(&cert, "not a certificate")?;
/// assert!(tls.reload().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ReloadableServerConfig {
    options: ServerOptions,
    /// For [`Identity::SelfSigned`]: the certificate made at the start and its key, which
    /// a reload keeps (a new one would break every client that pinned the first).
    made: Option<Made>,
    current: ArcSwap<InForce>,
}

/// The configuration in force, and its certificates, in order: each named by its file (or
/// `self-signed`) with its validity.
#[derive(Debug)]
struct InForce {
    config: Arc<ServerConfig>,
    certificates: Vec<(String, Option<Validity>)>,
}

impl InForce {
    fn new(options: &ServerOptions, loaded: Vec<Loaded>) -> Result<InForce> {
        let certificates = loaded
            .iter()
            .map(|one| {
                let name = match &one.files {
                    Some((cert, _)) => cert.display().to_string(),
                    None => "self-signed".to_owned(),
                };
                (name, one.chain.first().and_then(Validity::of))
            })
            .collect();
        let config = Arc::new(build(options, loaded)?);
        Ok(InForce {
            config,
            certificates,
        })
    }
}

/// A self-signed certificate made once, with what a reload needs to build with it again.
#[derive(Debug)]
struct Made {
    loaded: Loaded,
    about: SelfSigned,
}

impl ReloadableServerConfig {
    /// Builds the configuration of `options`, as [`super::server_config`] does.
    ///
    /// # Errors
    ///
    /// As [`super::server_config`]'s: a file that cannot be read or is not what it should
    /// be, and a key that does not belong to the certificate.
    pub fn new(options: ServerOptions) -> Result<ReloadableServerConfig> {
        let (loaded, about) = identity(&options.identity)?;
        let made = about.and_then(|about| {
            let loaded = loaded.first()?.duplicate();
            Some(Made { loaded, about })
        });
        let in_force = InForce::new(&options, loaded)?;
        Ok(ReloadableServerConfig {
            options,
            made,
            current: ArcSwap::from_pointee(in_force),
        })
    }

    /// The configuration in force, for the next handshake.
    pub fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.load().config)
    }

    /// Each certificate in force, named by its file (or `self-signed`), with when it is
    /// valid (`None` if it does not parse as X.509).
    pub fn certificates(&self) -> Vec<(String, Option<Validity>)> {
        self.current.load().certificates.clone()
    }

    /// For [`Identity::SelfSigned`]: the certificate that was made (a reload keeps it).
    pub fn self_signed(&self) -> Option<&SelfSigned> {
        self.made.as_ref().map(|made| &made.about)
    }

    /// Whether [`ReloadableServerConfig::reload`] reads anything: a certificate and key
    /// from files, or a client CA file.
    pub fn reads_files(&self) -> bool {
        !matches!(self.options.identity, Identity::SelfSigned(_))
            || self.options.client_ca.is_some()
    }

    /// The options it was built from (the files a reload reads).
    pub fn options(&self) -> &ServerOptions {
        &self.options
    }

    /// Whether [`ReloadableServerConfig::reload`] would succeed now (its files read and
    /// checked as a reload does), putting nothing in force: asked by a server once it has
    /// dropped its privileges, so that a key only root may read (certbot's are 0600) is
    /// said at start, not found out at the first rotation.
    ///
    /// # Errors
    ///
    /// As [`ReloadableServerConfig::reload`]'s.
    pub fn check_reload(&self) -> Result<()> {
        let loaded = match &self.made {
            Some(made) => vec![made.loaded.duplicate()],
            None => identity(&self.options.identity)?.0,
        };
        InForce::new(&self.options, loaded).map(drop)
    }

    /// Reads the certificate, key and client CA files again and puts the configuration
    /// they make in force for the handshakes that start from now on. A self-signed
    /// certificate is kept (only the client CA file is read again).
    ///
    /// # Errors
    ///
    /// As [`ReloadableServerConfig::new`]'s; the configuration in force stays.
    pub fn reload(&self) -> Result<()> {
        let loaded = match &self.made {
            Some(made) => vec![made.loaded.duplicate()],
            None => identity(&self.options.identity)?.0,
        };
        let in_force = InForce::new(&self.options, loaded)?;
        self.current.store(Arc::new(in_force));
        Ok(())
    }
}
