//! The keys and certificates a `tls:` server loads, checked by clients that are not
//! socketkit: keys in PKCS#8, PKCS#1 and SEC1 (made by openssl, read by Python's ssl
//! module), and `--tls-self-signed`'s certificate, announced with the fingerprint that
//! `openssl s_client` sees.

use std::path::Path;

use crate::support::certs::{Pair, Pki};
use crate::support::process::{Running, command, socketkit};
use crate::support::tls_peers::python_client;
use crate::support::tools;
use crate::tls_server::{ANSWER, output_of, serve_tls};

#[test]
fn keys_in_pkcs1_and_sec1_load_as_well_as_pkcs8() {
    let pki = Pki::new();
    if !tools::available("openssl") || !tools::available("python3") {
        return;
    }
    // SEC1 ("EC PRIVATE KEY") from the PKCS#8 key of the server certificate.
    let sec1 = pki.dir.path().join("server-sec1.key");
    openssl(&["ec", "-in", pki.server.key(), "-out", path(&sec1)]);
    let text = std::fs::read_to_string(&sec1).expect("read");
    assert!(text.starts_with("-----BEGIN EC PRIVATE KEY-----"), "{text}");
    let sec1_pair = Pair {
        cert: pki.server.cert.clone(),
        key: sec1,
    };
    // PKCS#1 ("RSA PRIVATE KEY") with a certificate signed by the test CA.
    let rsa = rsa_pair(&pki);
    for pair in [&pki.server, &sec1_pair, &rsa] {
        let server = serve_tls("greeting", pair, &[]);
        let Some(cmd) = python_client(&pki, server.port(), "read", "") else {
            return;
        };
        let out = output_of(cmd);
        assert_eq!(out.code(), 0, "{}: {}", pair.key(), out.stderr);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "你好");
    }
}

/// An RSA key in PKCS#1 and a certificate for localhost from the test CA, made by openssl.
fn rsa_pair(pki: &Pki) -> Pair {
    let dir = pki.dir.path();
    let key = dir.join("rsa.key");
    let csr = dir.join("rsa.csr");
    let cert = dir.join("rsa.pem");
    let ext = dir.join("rsa.ext");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n",
    )
    .expect("write");
    openssl(&["genrsa", "-traditional", "-out", path(&key), "2048"]);
    let text = std::fs::read_to_string(&key).expect("read");
    assert!(
        text.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "{text}"
    );
    openssl(&[
        "req",
        "-new",
        "-key",
        path(&key),
        "-subj",
        "/CN=localhost",
        "-out",
        path(&csr),
    ]);
    // The test CA's key never leaves memory, so this certificate gets a CA of its own,
    // trusted by adding it to the CA file.
    let own_ca_key = dir.join("rsa-ca.key");
    let own_ca = dir.join("rsa-ca.pem");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        path(&own_ca_key),
        "-out",
        path(&own_ca),
        "-days",
        "1",
        "-subj",
        "/CN=rsa test CA",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        path(&csr),
        "-CA",
        path(&own_ca),
        "-CAkey",
        path(&own_ca_key),
        "-CAcreateserial",
        "-out",
        path(&cert),
        "-days",
        "1",
        "-extfile",
        path(&ext),
    ]);
    let mut cas = std::fs::read_to_string(&pki.ca).expect("read CA");
    cas.push_str(&std::fs::read_to_string(&own_ca).expect("read CA"));
    std::fs::write(&pki.ca, cas).expect("write CA");
    Pair { cert, key }
}

fn openssl(args: &[&str]) {
    let mut cmd = command(Path::new("openssl"));
    cmd.args(args);
    let out = output_of(cmd);
    assert_eq!(out.code(), 0, "openssl {args:?}: {}", out.stderr);
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// With `--log-format json` the announcement is an object like the log's (it was the one
/// plain line besides `listening on`), shown at `-q` as in text.
#[test]
fn a_self_signed_certificate_is_announced_as_json_in_json_mode() {
    let mut cmd = socketkit();
    cmd.args(["serve", "-l", "tls:127.0.0.1:0", "--tls-self-signed"])
        .args(["-q", "--log-format", "json"]);
    let server = Running::start(cmd, 1);
    server.wait_for_stderr(&["fingerprint"], ANSWER);
    let log = server.stderr();
    let notice: serde_json::Value = log
        .lines()
        .filter(|line| !line.starts_with("listening on "))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .find(|object: &serde_json::Value| object.get("fingerprint").is_some())
        .unwrap_or_else(|| panic!("no announcement: {log}"));
    let fingerprint = notice["fingerprint"].as_str().unwrap_or_default();
    assert_eq!(fingerprint.len(), 32 * 3 - 1, "{notice}");
    assert!(
        notice["msg"]
            .as_str()
            .is_some_and(|msg| msg.ends_with(fingerprint)),
        "{notice}"
    );
    assert_eq!(
        notice["names"],
        serde_json::json!(["localhost", "127.0.0.1"])
    );
}

#[test]
fn a_self_signed_certificate_is_announced_with_its_fingerprint() {
    let mut cmd = socketkit();
    cmd.args([
        "serve",
        "greeting",
        "-l",
        "tls:127.0.0.1:0",
        "--tls-self-signed",
    ]);
    let server = Running::start(cmd, 1);
    server.wait_for_stderr(&["SHA-256 fingerprint"], ANSWER);
    let line = server
        .stderr()
        .lines()
        .find(|l| l.contains("fingerprint"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(
        line.starts_with("tls: self-signed certificate for localhost, 127.0.0.1;"),
        "{line}"
    );
    let fingerprint = line.rsplit(' ').next().unwrap_or("").to_owned();
    assert_eq!(fingerprint.len(), 32 * 3 - 1, "{line}");
    // The certificate the server presents is the one announced.
    if !tools::available("openssl") {
        return;
    }
    let mut sh = command(Path::new("sh"));
    sh.arg("-c").arg(format!(
        "openssl s_client -connect 127.0.0.1:{} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
        server.port()
    ));
    let out = output_of(sh);
    let printed = String::from_utf8_lossy(&out.stdout);
    let printed = printed.trim().rsplit('=').next().unwrap_or("");
    assert_eq!(printed, fingerprint, "{}", out.stderr);
}
