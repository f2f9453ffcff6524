//! Micro-benchmarks of the hot paths (divan): endpoint parsing, chargen line generation,
//! the accept-and-greet path and the echo copy, the last two over real loopback sockets.
//!
//! ```text
//! cargo bench --bench hot_paths
//! ```
//!
//! These time single operations in isolation; the side-by-side comparisons with the C
//! reference servers are `bench/compare.sh` (see docs/benchmarks.md).

use std::io::{Read, Write};
use std::net::TcpStream;

use socketkit::endpoint::Endpoint;
use socketkit::server::Server;
use socketkit::services::chargen;
use socketkit::services::echo::Echo;
use socketkit::services::greeting::Greeting;

fn main() {
    divan::main();
}

#[divan::bench(args = ["127.0.0.1:8080", "tcp:[::1]:8080", "udp:example.com:53", "unix:/run/app.sock"])]
fn parse_endpoint(text: &str) -> Endpoint {
    // The inputs are valid, so parsing cannot fail.
    divan::black_box(text).parse().expect("valid endpoint")
}

#[divan::bench]
fn chargen_line(bencher: divan::Bencher<'_, '_>) {
    let mut n = 0usize;
    bencher.bench_local(|| {
        n = n.wrapping_add(1);
        chargen::line(divan::black_box(n))
    });
}

/// A server on 127.0.0.1:0 running in its own runtime thread; returns its address.
fn start<F>(serve: F) -> String
where
    F: FnOnce(Server) -> std::pin::Pin<Box<dyn Future<Output = socketkit::Result<()>> + Send>>
        + Send
        + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let Ok(runtime) = runtime else { return };
        runtime.block_on(async move {
            let mut builder = Server::builder();
            builder.listen("127.0.0.1:0".parse().expect("valid endpoint"));
            let Ok(server) = builder.bind().await else {
                return;
            };
            let addr = server.local_endpoints()[0].to_string();
            let _ = tx.send(addr.trim_start_matches("tcp:").to_owned());
            let _ = serve(server).await;
        });
    });
    // The thread sends the address as soon as the server is bound.
    rx.recv().expect("the server starts")
}

/// One whole greeting connection per iteration: connect, read to end, close.
#[divan::bench]
fn accept_and_greet(bencher: divan::Bencher<'_, '_>) {
    let addr = start(|server| Box::pin(server.serve(Greeting::default())));
    let mut buf = Vec::with_capacity(16);
    bencher.bench_local(|| {
        buf.clear();
        let mut stream = TcpStream::connect(&addr).expect("connect");
        stream.read_to_end(&mut buf).expect("read");
        assert_eq!(buf.len(), 6);
    });
}

/// One 4 KiB round trip through the echo service per iteration, on a kept connection.
#[divan::bench]
fn echo_round_trip(bencher: divan::Bencher<'_, '_>) {
    let addr = start(|server| Box::pin(server.serve(Echo)));
    let mut stream = TcpStream::connect(&addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let block = vec![7u8; 4096];
    let mut back = vec![0u8; 4096];
    bencher.bench_local(|| {
        stream.write_all(&block).expect("write");
        stream.read_exact(&mut back).expect("read");
    });
}
