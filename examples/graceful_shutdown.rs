//! Graceful shutdown: on Ctrl-C the server stops accepting at once, lets the connections in
//! flight finish for up to the drain deadline, then closes the rest. A second Ctrl-C closes
//! everything now.
//!
//! Each connection here is slow on purpose (it answers after two seconds), so there is
//! something to drain:
//!
//! ```text
//! cargo run --example graceful_shutdown              # listens on 127.0.0.1:12345
//! nc 127.0.0.1 12345 &  sleep 0.5; kill -INT <server pid>   # nc still gets its answer
//! ```

use std::process::ExitCode;

use std::time::Duration;

use socketkit::server::{Connection, Server};
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{SignalKind, signal};

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

async fn run() -> socketkit::Result<()> {
    let endpoint = endpoint_arg("127.0.0.1:12345");
    let mut builder = Server::builder();
    builder
        .listen(endpoint)
        .drain_timeout(Duration::from_secs(10));
    let server = builder.bind().await?;
    let handle = server.shutdown_handle();
    // Ctrl-C is ours from here on, before anyone is told the server is up (until its
    // handler is in, SIGINT would kill the process).
    let mut interrupts = signal(SignalKind::interrupt())
        .map_err(|err| socketkit::Error::without_target(socketkit::error::Op::Io, err))?;
    tokio::spawn(async move {
        // Each Ctrl-C asks again: the first drains, the second forces.
        while interrupts.recv().await.is_some() {
            eprintln!("shutting down");
            handle.shutdown();
        }
    });
    eprintln!("listening on {}", server.local_endpoints()[0]);

    server
        .serve(|mut conn: Connection| async move {
            eprintln!("{}: answering in 2s", conn.peer_addr());
            tokio::time::sleep(Duration::from_secs(2)).await;
            conn.write_all(b"finished\n").await
        })
        .await?;
    eprintln!("every connection is closed");
    Ok(())
}
