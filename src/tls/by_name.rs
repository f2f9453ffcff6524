//! Choosing a server's certificate by the name a client asks for (SNI), among several: each
//! certificate is found under the DNS names of its `subjectAltName` (read with `x509-cert`),
//! an exact name first, then a wildcard (`*.example.com`, one label); the first certificate
//! answers clients that ask for no name, or for one no certificate has (as a web server's
//! default host does).

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use x509_cert::Certificate;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use super::chain::{Loaded, pair_error};
use super::names::ServerNames;
use super::pem;
use super::provider;
use crate::error::Result;

/// Certificates by name, and the one for every other client.
#[derive(Debug)]
pub(crate) struct ByName {
    default: Arc<CertifiedKey>,
    names: ServerNames<Arc<CertifiedKey>>,
}

impl ByName {
    /// Indexes `loaded` (at least one) by their names; a name two certificates share goes
    /// to the first.
    ///
    /// # Errors
    ///
    /// A key that does not match its certificate, or a certificate after the first that
    /// names no host (no client could ask for it).
    pub(crate) fn new(loaded: Vec<Loaded>) -> Result<ByName> {
        let mut default = None;
        let mut by_name = ServerNames::default();
        for Loaded { chain, key, files } in loaded {
            let names = chain.first().map(dns_names).unwrap_or_default();
            if default.is_some()
                && names.is_empty()
                && let Some((cert, _)) = &files
            {
                let reason = "it names no host (no DNS name in its subjectAltName), so no client can ask for it besides the first certificate";
                return Err(pem::invalid(cert, "TLS certificate", reason.to_owned()));
            }
            let certified = CertifiedKey::from_der(chain, key, &provider())
                .map_err(|err| pair_error(files.as_ref(), &err))?;
            let certified = Arc::new(certified);
            for name in names {
                by_name.insert(&name, Arc::clone(&certified));
            }
            default.get_or_insert(certified);
        }
        let default = default.ok_or_else(|| {
            crate::Error::without_target(
                crate::error::Op::Load("TLS certificates"),
                std::io::Error::other("no certificate was given"),
            )
        })?;
        Ok(ByName {
            default,
            names: by_name,
        })
    }

    /// The certificate for a client that asked for `name` (`None`: for no name).
    fn choose(&self, name: Option<&str>) -> &Arc<CertifiedKey> {
        name.and_then(|name| self.names.get(name))
            .unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for ByName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(self.choose(hello.server_name())))
    }
}

/// The DNS names of a certificate's `subjectAltName`, lower case; none when it has none or
/// does not parse.
fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok(cert) = Certificate::from_der(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some((_, SubjectAltName(names)))) = cert.tbs_certificate().get_extension() else {
        return Vec::new();
    };
    names
        .into_iter()
        .filter_map(|name| match name {
            GeneralName::DnsName(dns) => Some(dns.to_string().to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(names: &[&str]) -> (Loaded, CertificateDer<'static>) {
        let names = names.iter().map(|&n| n.to_owned()).collect::<Vec<_>>();
        let made = rcgen::generate_simple_self_signed(names).expect("a certificate");
        let der = made.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(made.key_pair.serialize_der().into());
        let loaded = Loaded {
            chain: vec![der.clone()],
            key,
            files: None,
        };
        (loaded, der)
    }

    #[test]
    fn a_name_gets_its_certificate_a_wildcard_one_label_and_others_the_first() {
        let (first, first_der) = loaded(&["default.test"]);
        let (shop, shop_der) = loaded(&["shop.example.com", "Shop.Example.net"]);
        let (any, any_der) = loaded(&["*.example.com"]);
        let by_name = ByName::new(vec![first, shop, any]).expect("indexed");
        let chosen = |name: Option<&str>| by_name.choose(name).cert[0].clone();
        assert_eq!(chosen(Some("shop.example.com")), shop_der);
        assert_eq!(chosen(Some("SHOP.example.net")), shop_der);
        assert_eq!(chosen(Some("api.example.com")), any_der);
        assert_eq!(chosen(Some("a.b.example.com")), first_der);
        assert_eq!(chosen(Some("example.com")), first_der);
        assert_eq!(chosen(None), first_der);
    }

    #[test]
    fn a_certificate_after_the_first_must_name_a_host() {
        let (first, _) = loaded(&["default.test"]);
        let (mut nameless, _) = loaded(&[]);
        nameless.files = Some(("nameless.pem".into(), "nameless.key".into()));
        let err = ByName::new(vec![first, nameless]).expect_err("refused");
        assert!(
            err.to_string()
                .starts_with("cannot load TLS certificate nameless.pem: it names no host"),
            "{err}"
        );
    }
}
