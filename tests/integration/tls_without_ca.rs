//! What `--tls-insecure` and `--tls-fingerprint` take: any certificate (a pin, exactly the
//! one it names), as `curl -k` and `openssl s_client` do, the server still proving it holds
//! the certificate's key. An X.509 v1 certificate — what `openssl x509 -req -signkey`
//! makes, and many appliances ship — was refused with rustls's debug text
//! (`UnsupportedCertVersion`): its handshake signature was checked by parsing the whole
//! certificate with webpki. Found by an outside audit of socketkit's TLS.

use std::path::Path;
use std::process::Command;

use crate::support::certs::Pair;
use crate::support::process::{DEADLINE, run, socketkit};
use crate::support::tls_peers::s_server;
use crate::support::tools;

/// Runs `openssl ARGS`, returning its stdout; fails the test if it fails.
fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A self-signed X.509 v1 certificate for localhost with a new key of `algorithm` (the
/// options of `openssl genpkey`), and its SHA-256 fingerprint as openssl prints it.
fn v1_certificate(dir: &Path, name: &str, algorithm: &[&str]) -> (Pair, String) {
    let path = |file: &str| dir.join(format!("{name}-{file}"));
    let text = |file: &str| path(file).to_str().expect("UTF-8 temp paths").to_owned();
    let (key, csr, cert) = (text("key.pem"), text("csr.pem"), text("cert.pem"));
    openssl(&[&["genpkey"], algorithm, &["-out", &key]].concat());
    openssl(&[
        "req",
        "-new",
        "-key",
        &key,
        "-subj",
        "/CN=localhost",
        "-out",
        &csr,
    ]);
    let made = openssl(&["x509", "-req", "-in", &csr, "-signkey", &key, "-days", "5"]);
    std::fs::write(&cert, made).expect("the certificate is written");
    let text_form = openssl(&["x509", "-in", &cert, "-noout", "-text"]);
    assert!(text_form.contains("Version: 1 (0x0)"), "{text_form}");
    let fingerprint = openssl(&["x509", "-in", &cert, "-noout", "-fingerprint", "-sha256"]);
    let fingerprint = fingerprint
        .trim()
        .rsplit('=')
        .next()
        .expect("a fingerprint")
        .to_owned();
    let pair = Pair {
        cert: path("cert.pem"),
        key: path("key.pem"),
    };
    (pair, fingerprint)
}

#[test]
fn insecure_and_a_pin_take_a_v1_certificate_over_tls_1_2_and_1_3() {
    if !tools::available("openssl") {
        return;
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    let keys: [(&str, &[&str]); 2] = [
        (
            "rsa",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        ),
        (
            "ec",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        ),
    ];
    for (name, algorithm) in keys {
        let (pair, fingerprint) = v1_certificate(dir.path(), name, algorithm);
        let pinned = ["--tls-fingerprint", fingerprint.as_str()];
        for version in ["-tls1_2", "-tls1_3"] {
            for verify in [&["--tls-insecure"][..], &pinned[..]] {
                let Some((_server, port)) = s_server(&pair, &[version]) else {
                    return;
                };
                let mut client = socketkit();
                client
                    .args(["connect", &format!("tls:127.0.0.1:{port}")])
                    .args(verify);
                let out = run(client, b"hello\n".to_vec(), DEADLINE);
                assert_eq!(out.code(), 0, "{name} {version} {verify:?}: {}", out.stderr);
            }
        }
    }
}

#[test]
fn a_certificate_or_key_the_server_cannot_use_is_named_in_words() {
    if !tools::available("openssl") {
        return;
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    let (v1, _) = v1_certificate(
        dir.path(),
        "v1",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let small_key = dir.path().join("rsa1024.key");
    let small_cert = dir.path().join("rsa1024.pem");
    let text = |path: &Path| path.to_str().expect("UTF-8 temp paths").to_owned();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:1024",
        "-out",
        &text(&small_key),
    ]);
    openssl(&[
        "req",
        "-x509",
        "-key",
        &text(&small_key),
        "-subj",
        "/CN=localhost",
        "-days",
        "5",
        "-out",
        &text(&small_cert),
    ]);
    let cases = [
        (
            v1.cert(),
            v1.key(),
            format!(
                "error: cannot load TLS certificate {}: the certificate is X.509 version 1",
                v1.cert()
            ),
        ),
        (
            &*text(&small_cert),
            &*text(&small_key),
            format!(
                "error: cannot load TLS private key {}: this kind or size of key is not supported",
                text(&small_key)
            ),
        ),
    ];
    for (cert, key, want) in cases {
        let mut serve = socketkit();
        serve
            .args(["serve", "-l", "tls:127.0.0.1:0"])
            .args(["--tls-cert", cert, "--tls-key", key]);
        let out = run(serve, Vec::new(), DEADLINE);
        assert_eq!(out.code(), 2, "{}", out.stderr);
        assert!(
            out.stderr.starts_with(&want),
            "want {want:?}\ngot {}",
            out.stderr
        );
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
}

/// A system with no CA store (an image without ca-certificates; here the store's variables
/// aim at nothing) is a runtime failure, exit 1, not bad usage: the command line is right.
#[test]
fn a_system_without_a_ca_store_is_exit_1() {
    let empty = tempfile::tempdir().expect("temp dir");
    let mut cmd = socketkit();
    cmd.args(["connect", "tls:127.0.0.1:9"])
        .env("SSL_CERT_DIR", empty.path())
        .env("SSL_CERT_FILE", empty.path().join("none.pem"));
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("error: cannot load TLS CA certificates of the system"),
        "{}",
        out.stderr
    );
}
