//! An echo server over TLS: every byte a client sends comes back, encrypted both ways, until
//! it closes (its close_notify), and then the server closes too (ours).
//!
//! ```text
//! cargo run --example tls_echo          # tls:127.0.0.1:8443 with a throwaway certificate
//! cargo run --release -- connect tls:localhost:8443 --tls-ca /tmp/tls_echo.pem
//! openssl s_client -connect 127.0.0.1:8443 -CAfile /tmp/tls_echo.pem -servername localhost
//! ```
//!
//! Without certificate files the server makes a self-signed one for localhost and writes it
//! to `tls_echo.pem` in the temporary directory, for clients to trust: `/tmp` above, or
//! `$TMPDIR` when that is set (the path is printed: use the one it prints).
//! With your own: `cargo run --example tls_echo -- tls::8443 cert.pem key.pem`.

use std::process::ExitCode;

use socketkit::server::{Connection, Server};
use socketkit::tls::{Identity, ServerOptions, server_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "shared/endpoint_arg.rs"]
mod endpoint_arg;
use endpoint_arg::endpoint_arg;
#[path = "shared/outcome.rs"]
mod outcome;
use outcome::outcome;

#[tokio::main]
async fn main() -> ExitCode {
    outcome(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = endpoint_arg("tls:127.0.0.1:8443");
    let args: Vec<String> = std::env::args().skip(2).collect();
    let identity = match args.as_slice() {
        [cert, key] => Identity::Files {
            cert: cert.into(),
            key: key.into(),
        },
        _ => Identity::SelfSigned(vec!["localhost".into(), "127.0.0.1".into()]),
    };
    let tls = server_config(&ServerOptions::new(identity))?;

    let mut builder = Server::builder();
    builder.listen(endpoint).tls(tls.config);
    let server = builder.bind().await?;
    eprintln!("listening on {}", server.local_endpoints()[0]);
    if let Some(made) = tls.self_signed {
        let path = std::env::temp_dir().join("tls_echo.pem");
        std::fs::write(&path, made.pem)?;
        eprintln!(
            "self-signed certificate for localhost written to {}",
            path.display()
        );
        eprintln!("SHA-256 fingerprint {}", made.fingerprint);
    }

    server
        .serve(|mut conn: Connection| async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = conn.read(&mut buf).await?;
                if n == 0 {
                    return conn.shutdown().await; // close_notify, then the half-close
                }
                conn.write_all(&buf[..n]).await?;
            }
        })
        .await?;
    Ok(())
}
