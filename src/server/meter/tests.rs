//! The meters' counts, metrics and closing line, without a socket.

use super::*;
use crate::metrics::Metrics;

fn peer() -> Address {
    Address::from(std::net::SocketAddr::from(([192, 0, 2, 7], 4000)))
}

#[test]
fn a_connection_counts_its_bytes_and_its_life_into_its_listener() {
    let metrics = Metrics::new();
    let listener = ListenerMeter::new("tcp:127.0.0.1:9".into(), Some(&metrics));
    listener.accepted();
    let mut meter = Meter::start(peer(), &listener, || None);
    let text = metrics.render();
    assert!(text.contains("socketkit_connections_active{listener=\"tcp:127.0.0.1:9\"} 1"));
    meter.received(10);
    meter.sent(3);
    {
        let (mut received, mut sent) = meter.tallies();
        received.add(5);
        sent.add(4);
    }
    meter.refused(RefusalReason::Proxy);
    drop(meter);
    let text = metrics.render();
    for line in [
        "socketkit_connections_accepted_total{listener=\"tcp:127.0.0.1:9\"} 1",
        "socketkit_connections_active{listener=\"tcp:127.0.0.1:9\"} 0",
        "socketkit_bytes_received_total{listener=\"tcp:127.0.0.1:9\"} 15",
        "socketkit_bytes_sent_total{listener=\"tcp:127.0.0.1:9\"} 7",
        "socketkit_connections_refused_total{listener=\"tcp:127.0.0.1:9\",reason=\"proxy\"} 1",
        // Refused: how long it lasted is no served connection's duration.
        "socketkit_connection_duration_seconds_count{listener=\"tcp:127.0.0.1:9\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
}

#[test]
fn without_metrics_or_debug_log_a_connection_counts_nothing() {
    let listener = ListenerMeter::new("tcp:127.0.0.1:9".into(), None);
    let mut meter = Meter::start(peer(), &listener, || None);
    meter.received(10);
    assert!(meter.open.is_none());
    meter.set_peer(Address::unix("/run/x"));
    assert!(
        std::mem::size_of::<Open>() <= 16,
        "an idle connection stays small"
    );
    assert_eq!(meter.peer(), &Address::unix("/run/x"));
}
