//! Micro-benchmarks of the hot paths (divan): endpoint parsing, chargen line generation,
//! access-rule lookups with 0 to 100,000 rules, per-source admission,
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

use socketkit::access::{AccessRules, SourceLimits};
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

/// Deny rules as a large blocklist has them: `count` single hosts spread over 10.0.0.0/8,
/// plus a few networks of other lengths.
fn deny_rules(count: u32) -> AccessRules {
    let hosts = (0..count).map(|i| {
        let host =
            std::net::Ipv4Addr::from(0x0a00_0000 + i.wrapping_mul(2_654_435_761) % 0x0100_0000);
        ipnet::IpNet::from(std::net::IpAddr::from(host))
    });
    let networks = ["192.168.0.0/16", "172.16.0.0/12", "2001:db8::/32"]
        .into_iter()
        .map(|n| n.parse().expect("a valid network"));
    AccessRules::new([], hosts.chain(networks))
}

/// One access decision for an admitted IPv4 source (the worst case: every length is probed).
#[divan::bench(args = [0, 10, 1_000, 100_000])]
fn access_rule_lookup(bencher: divan::Bencher<'_, '_>, rules: u32) {
    let rules = deny_rules(rules);
    let source: std::net::IpAddr = "127.0.0.2".parse().expect("an address");
    bencher.bench_local(|| rules.admits(divan::black_box(source)));
}

/// Admitting and releasing one connection under both per-source limits.
#[divan::bench]
fn per_source_admit(bencher: divan::Bencher<'_, '_>) {
    let limits = SourceLimits::new(Some(64), Some("1000000/1s".parse().expect("a rate")));
    let source: std::net::IpAddr = "127.0.0.2".parse().expect("an address");
    bencher.bench_local(|| drop(limits.admit(divan::black_box(source))));
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
