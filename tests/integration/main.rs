//! socketkit's integration tests: one binary (so the suite links once), one module per area.
//! Every test binds port 0 or a Unix socket in a temp dir, talks only over loopback, bounds
//! its waits, and kills and reaps what it starts.

// A test binary has no public API: `pub` in `support` only shares items between modules.
#![allow(unreachable_pub)]

/// Shared pieces: spawning binaries, loopback helpers, external-tool probes.
mod support;

/// Access control, per-source limits and privilege drop (SPEC §3.2), sources 127.0.0.2, .3 …
mod access_control;
/// Behind a load balancer: HAProxy, PROXY protocol both ways, metrics and health.
mod balancer;
/// The classic services where an audit found them short of their RFCs: chargen reads,
/// a refused qotd client takes no quote.
mod classic_services;
/// `socketkit bench`: counts and errors of short runs against `serve`.
mod cli_bench;
/// `socketkit bench --compare`, errors by errno, idle memory per connection (issue 15 §3).
mod cli_bench_compare;
/// `socketkit bench` when operations fail: refused, wrong answers; the retry pause.
mod cli_bench_failures;
/// bench where load and server part ways: an open loop past the server's pace, the run's
/// end, `--count`'s warm-up, a run shorter than an interval, an answer of nothing.
mod cli_bench_open_loop;
/// bench's figures against servers that count for themselves: late answers, closed
/// connections, `--count`, a stalled server, idle runs, signals.
mod cli_bench_truth;
/// `socketkit bench` against unixgram servers: the kernel's queue limit, a missing socket.
mod cli_bench_unixgram;
/// `socketkit bench`: what each mode can load and which options it takes.
mod cli_bench_usage;
/// `socketkit connect`: the stdio bridge and its EOF rules.
mod cli_connect;
/// `connect --idle-timeout` shorter than the input's pause, against a peer that answered and
/// closed: exit 0, as without a limit.
mod cli_connect_idle;
/// `connect` once the peer has ended its side and the input is still open.
mod cli_connect_peer_closed;
/// `connect` whose input the peer refused with a reset after its own end: exit 1.
mod cli_connect_refused_input;
/// `connect --send-only` against a peer that answers each command as it runs it.
mod cli_connect_send_only;
/// `connect` stopped a while (^Z, a debugger): what happened meanwhile is taken as it was.
mod cli_connect_stopped;
/// `socketkit connect unixgram:`: the client's socket file, on exit, signal and after a kill.
mod cli_connect_unixgram;
/// Completions, the man page, and docs/cli.md against `--help`.
mod cli_discover;
/// Exit codes and `error:` lines of SPEC §2.3.
mod cli_errors;
/// An argument that is not UTF-8: named in the `error:` line.
mod cli_errors_encoding;
/// `socketkit forward`: relays, half-close, concurrency, failures, limits.
mod cli_forward;
mod cli_forward_checks_apart;
mod cli_forward_pool;
mod cli_forward_targets;
/// `socketkit forward` over UDP: one upstream socket per client, idle timeout.
mod cli_forward_udp;
/// `socketkit forward -l udp:` with the access rules, per-source limits and `--user`.
mod cli_forward_udp_access;
/// `socketkit forward` with Unix datagrams on either side (a syslog relay's shape).
mod cli_forward_unixgram;
/// Generated argument vectors for every subcommand: exit 0, 1 or 2, one `error:` line at most.
mod cli_fuzz;
/// `socketkit listen`: one peer, -k, UDP, Unix.
mod cli_listen;
/// `listen fd:N` / `fd:NAME`: a socket passed by socket activation (SPEC §3.4).
mod cli_listen_inherited;
/// `listen -v`'s connection lines, with the fields of `serve`'s (SPEC §3.5).
mod cli_listen_logs;
/// Scripts moving from nc, ncat and socat (an outside audit): ncat's --wait, `-z` port lists
/// and one-port ranges, socat's address words, hints for flags socketkit lacks.
mod cli_migrate;
/// The netcat habits of SPEC §3.6: nc's forms and flags, and hints for the ones spelled
/// differently.
mod cli_netcat;
/// `connect -z HOST LOW-HIGH`: nc's port scan.
mod cli_probe;
/// `connect --proxy`: SOCKS5 and HTTP CONNECT, through real proxies and written ones.
mod cli_programs;
mod cli_proxy;
/// `connect --proxy` against proxies that answer slowly or with bare LF line ends.
mod cli_proxy_answers;
mod cli_proxy_socks4;
/// `socketkit serve`: readiness, signals, concurrency, restart on the same port.
mod cli_serve;
/// A failed connection's one `closed` line, with how it failed.
mod cli_serve_log_errors;
/// `socketkit forward --socks`: a SOCKS5 proxy, with socketkit's client, curl and raw bytes.
mod cli_socks;
mod cli_ssh;
/// Standard input and output left non-blocking by the parent: waited for, every byte passes.
mod cli_stdio_nonblocking;
/// `connect` and `listen` with pipes on both ends, read the way programs read them:
/// request/response rounds, byte-at-a-time readers, both directions at once.
mod cli_stdio_pipes;
/// A reader of stdout that leaves while the peer is quiet (`| head -1` after a greeting).
mod cli_stdio_reader_gone;
/// Datagrams at their transports' size limits through `connect` and `listen`, whole.
/// Configurations far larger than the examples.
mod config_scale;
mod datagram_sizes;
/// The drain's end as a client sees it: a reset for a connection cut at the deadline, a
/// FIN for one that ended on its own.
mod drain_reset;
/// Sixty pipelined echo clients at once, on each engine where a stream once broke.
mod echo_pipelined;
/// Endpoint forms: abstract Unix sockets, IPv6 zones.
mod endpoint_forms;
/// The EOF model of docs/cli.md, row by row.
mod eof_model;
/// The framework examples (echo_server, udp_echo, blocking_handler, graceful_shutdown,
/// tls_echo).
mod examples;
/// `socketkit forward` out of file descriptors, TCP and UDP: back off, log once per burst.
mod forward_faults;
/// The datagram relay stopped past its idle limit or in its shutdown delay: nothing dropped.
mod forward_udp_stopped;
/// A name whose first address drops the handshake: `connect` and `forward` race its
/// addresses (Happy Eyeballs).
mod happy_eyeballs;
/// What a parent may leave socketkit with: signals blocked or ignored, no `PATH`, `NO_COLOR`,
/// an unwritable pid file, a failing stdin, an unusable `$TMPDIR`.
mod hostile_env;
/// `--inetd` with a connection made by the test: admission as on a listener.
mod inetd;
/// Against other people's tools: OpenBSD nc, socat.
mod interop;
/// `--io-engine`: which engine serves, and the io_uring engine's bytes and shutdowns.
mod io_engine;
/// The io_uring engine's own admission: PROXY headers, access rules, refusals.
mod io_engine_admission;
/// io_uring echo with clients that send and do not read: they hold back only themselves.
mod io_engine_backpressure;
/// `serve -v` names each stream listener's engine, and why not io_uring.
mod io_engine_choice;
/// Where a greeting's connections land with several io_uring workers.
mod io_engine_steering;
/// Where the kernel lacks io_uring, `SO_REUSEPORT` or `splice(2)` (taken away by seccomp).
mod kernel_fallbacks;
/// Sandboxes that refuse what socketkit depends on: a fallback or one `error:` line.
mod kernel_refusals;
/// The layering of docs/architecture.md: allowed imports, private internals, circles.
mod layers;
/// The library in a host that panics before its `async` block, passes `Duration::MAX`, or
/// keeps SIGPIPE at its default.
mod library_edges;
/// The library when something goes wrong around it: panicking handlers, a dropped `serve`,
/// `tls:` given to plain calls, the TLS bridge from async code, `sendall`'s timeout.
mod library_faults;
/// Where the log and the output go when that place misbehaves.
mod log_backpressure;
/// Text logs and readiness lines stay one line per event whatever a path holds.
mod log_forgery;
/// Socket activation (fd:N, fd:NAME, LISTEN_FDS), --inetd, sd_notify, exec children.
mod managed_activation;
/// SIGUSR2: restart without a refused connection, under load, for serve and forward.
mod managed_restart;
mod managed_restart_edges;
/// SIGUSR2 with `--metrics`: the metrics socket handed over, no scrape reset or answered by
/// the old process once the new one is ready.
mod managed_restart_metrics;
/// A SIGHUP during a SIGUSR2 restart reaches the new process.
mod managed_restart_reload;
/// A restart between two versions: an older one started by a newer, a symlink repointed.
mod managed_restart_versions;
/// Signals at awkward moments: a stop after a restart, a stop to the new pid, early signals.
mod managed_signal_timing;
/// `--metrics` and `/health`: every path a connection takes counts what it did.
mod metrics;
/// The duration histogram against refused connections, on both engines.
mod metrics_refusals;
/// SIGHUP reloads counted by result, and whether the last one succeeded.
mod metrics_reloads;
/// Name lookups under a resolver of the test's own: slow, silent, failing.
mod name_lookups;
/// The files options name: a FIFO at a reload, one past 16 MiB, a byte order mark.
mod option_files;
/// Property tests of the library's parsers: no panic on any input, printing round-trips.
mod parsers;
/// socketkit as PID 1 of a PID namespace (a container's entrypoint).
mod pid_one;
/// `bench --send-proxy`: headers the PROXY servers admit, and a plain echo sends back.
/// A server that drops root: what it leaves open to its user and to everyone.
mod privileges;
mod proxy_bench;
/// `listen --proxy-protocol`: behind HAProxy and a v1 client, and its refusals.
mod proxy_listen;
/// The PROXY protocol through the binary: curl's and HAProxy's headers, ours into
/// HAProxy, and the refusals.
mod proxy_protocol;
/// `forward --send-proxy v2`: the client's TLS session told to the target in TLVs.
mod proxy_tlvs;
/// Blocking handlers on the server's thread pool: the drain, the idle limit.
mod server_blocking;
/// How a served connection closes when its handler is done: half-closed first, as
/// `socketserver` does, so an unread request does not turn the answer's end into a reset.
mod server_close;
/// Bad clients and scarce resources: resets, stalls, bursts, EMFILE, shutdown in flight.
mod server_faults;
/// Admission stages between accept and the service: refusals, order, deadlines, shutdown.
mod server_nodelay;
mod server_pipeline;
/// `serve` and `forward` stopped past their idle limit: a talking client is kept.
mod server_stopped;
/// Unix socket files: stale, foreign, live, permissions, removal.
mod server_unix;
/// The exec service: the socket handed to the program, pipes only under TLS, what the
/// server still does around it.
mod service_exec;
/// exec's edges: a child outside the program's group at the idle timeout, the kill's log,
/// a program the `--user` may not run.
mod service_exec_edges;
mod service_exec_nodelay;
/// The exec service on pipes (TLS, Unix under an idle timeout): an upload after the
/// program's output ended, a program that works on.
mod service_exec_pipes;
/// Every built-in service, per RFC, over TCP, UDP and Unix sockets.
mod services;
/// `forward --sni-route`: TLS clients relayed by the server name they ask for.
mod sni_route;
/// `socketkit::socket`: the BSD layer over TCP v4/v6, UDP, Unix stream and datagram.
mod socket;
/// The low-level layer at its edges: NUL in a path, `recv(0)`, linger, ports out of range.
mod socket_corners;
/// Start-up under tight descriptor and thread limits: readiness only once serving, no panic.
mod startup_limits;
/// A process that can start no more threads: reloads and name lookups go on, no panic.
mod thread_shortage;
/// TLS clients (connect, forward --to) against OpenSSL, socat and Python servers.
mod tls_client;
/// TLS under stalled and garbage clients, the handshake deadline, and start-up errors.
mod tls_faults;
/// `forward --to tls:` against OpenSSL and Python servers: close_notify, truncation, client certificates.
mod tls_forward_target;
/// The keys (PKCS#8, PKCS#1, SEC1) and self-signed certificates a TLS server loads.
mod tls_keys;
/// `connect -z` on tls: endpoints: the handshake is the probe.
mod tls_probe;
/// `forward -l tls: --to tls:` with ALPN: the target speaks what the client agreed on.
mod tls_relay_alpn;
/// Certificate rotation: SIGHUP reloads a tls: listener's certificate, key and client CAs.
mod tls_reload;
/// `connect tls: --send-only`: delivery to an echoing server, the end against a greeting one.
mod tls_send_only;
/// TLS servers (serve, listen, forward -l) against OpenSSL, socat, Python and curl clients.
mod tls_server;
/// An output nobody reads holds back the receiving, never the sending (TLS as TCP).
mod tls_stuck_output;
/// --tls-insecure and --tls-fingerprint take any certificate, X.509 v1 too.
mod tls_without_ca;
/// TLS failures in words: a relay's closed line, bench's first error.
mod tls_words;
/// The tutorial's server and client, against Python ports of each other.
mod tutorial;
/// UDP answers that would start endless loops: from ports below 1024, from the listener
/// itself.
mod udp_loops;
/// UDP listeners on a wildcard address (`serve`, `forward`): each answer from the address
/// its client sent to, which a connected client needs.
mod udp_wildcard;
