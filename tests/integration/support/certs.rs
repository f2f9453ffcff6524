//! Test certificates, made fresh by each test with rcgen in a temp dir: a CA, a server
//! certificate for localhost/127.0.0.1/::1, a client certificate, an expired one, one for
//! the wrong name, and one from a CA nobody trusts. All ECDSA P-256, all PEM.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pair {
    /// The certificate path as a string, for command lines.
    pub fn cert(&self) -> &str {
        self.cert.to_str().expect("temp paths are UTF-8")
    }

    /// The key path as a string.
    pub fn key(&self) -> &str {
        self.key.to_str().expect("temp paths are UTF-8")
    }
}

/// Everything a TLS test needs, in one temp dir removed on drop.
pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The CA that signed `server`, `client`, `expired` and `wrong_name`.
    pub ca: PathBuf,
    pub server: Pair,
    pub client: Pair,
    pub expired: Pair,
    pub wrong_name: Pair,
    /// Valid for localhost, but signed by a CA that is not `ca`.
    pub stranger: Pair,
}

impl Pki {
    /// A rustls client session that trusts `ca` and names `localhost`, as socketkit's own
    /// client sets one up: for tests that drive the TLS bytes themselves over a socket.
    pub fn client_session(&self) -> socketkit::tls::rustls::ClientConnection {
        use socketkit::tls::{ClientOptions, client_config, rustls};
        let options = ClientOptions {
            ca: Some(self.ca.clone()),
            ..ClientOptions::default()
        };
        let config = client_config(&options).expect("a client config for the test CA");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
        rustls::ClientConnection::new(config, name).expect("a client session")
    }

    /// Makes the CA and every certificate.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca, ca_key) = authority(CA_NAME);
        let ca_path = write(dir.path(), "ca.pem", &ca.pem());
        let leaf = |name: &str, names: &[&str], eku, expired: bool| {
            issue(dir.path(), name, names, eku, expired, &ca, &ca_key)
        };
        let local = ["localhost", "127.0.0.1", "::1"];
        let server = leaf("server", &local, ExtendedKeyUsagePurpose::ServerAuth, false);
        let client = leaf(
            "client",
            &["client.test"],
            ExtendedKeyUsagePurpose::ClientAuth,
            false,
        );
        let expired = leaf("expired", &local, ExtendedKeyUsagePurpose::ServerAuth, true);
        let wrong_name = leaf(
            "wrong-name",
            &["wrong.example"],
            ExtendedKeyUsagePurpose::ServerAuth,
            false,
        );
        let (other_ca, other_key) = authority("someone else's CA");
        let stranger = issue(
            dir.path(),
            "stranger",
            &local,
            ExtendedKeyUsagePurpose::ServerAuth,
            false,
            &other_ca,
            &other_key,
        );
        Pki {
            dir,
            ca: ca_path,
            server,
            client,
            expired,
            wrong_name,
            stranger,
        }
    }

    /// The CA file as a string.
    pub fn ca(&self) -> &str {
        self.ca.to_str().expect("temp paths are UTF-8")
    }

    /// A CA certificate with the name of `ca` but an Ed25519 key, which signed nothing: a
    /// client that trusts it finds it as the server's issuer and cannot verify with it.
    pub fn namesake_ca(&self) -> PathBuf {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("an Ed25519 key");
        let ca = authority_with(CA_NAME, &key);
        write(self.dir.path(), "namesake-ca.pem", &ca.pem())
    }

    /// A file in the temp dir with `content`.
    pub fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write a test file");
        path
    }
}

/// The name of the CA that signs the test certificates.
const CA_NAME: &str = "socketkit test CA";

fn authority(name: &str) -> (Certificate, KeyPair) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("a CA key");
    (authority_with(name, &key), key)
}

fn authority_with(name: &str, key: &KeyPair) -> Certificate {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.self_signed(key).expect("a CA certificate")
}

fn issue(
    dir: &Path,
    name: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
    expired: bool,
    ca: &Certificate,
    ca_key: &KeyPair,
) -> Pair {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("a key");
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(names).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![usage];
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 12, 31);
    }
    let cert = params.signed_by(&key, ca, ca_key).expect("a certificate");
    Pair {
        cert: write(dir, &format!("{name}.pem"), &cert.pem()),
        key: write(dir, &format!("{name}.key"), &key.serialize_pem()),
    }
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write a PEM file");
    path
}
