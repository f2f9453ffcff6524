#!/usr/bin/env python3
"""TLS termination, side by side in the same run (issue 11):

* socketkit forward -l tls:... --to BACKEND   (TLS terminated, plaintext relayed)
* socketkit serve greeting|echo -l tls:...    (TLS terminated by the service itself)
* stunnel                                     (accept TLS, connect BACKEND)
* HAProxy, mode tcp, bind ... ssl crt ...     (accept TLS, connect BACKEND)

and, with `--modes sni`, TLS passed through by server name to a backend that terminates it
(`socketkit serve greeting -l tls:`):

* socketkit forward -l ... --sni-route localhost=BACKEND   (the ClientHello read, routed)
* socketkit forward -l ... --to BACKEND                     (the same relay, no routing)
* HAProxy, mode tcp, req_ssl_sni                            (inspect-delay, use_backend)

all with the same ECDSA P-256 certificate, under the same load: `socketkit bench tls:...`
with full handshakes (no resumption), `--mode greeting` for handshakes/s (BACKEND: the C
greet_epoll of ../shared/bench, or `socketkit serve greeting`) and `--mode echo` for MB/s
(BACKEND: echo_epoll, or `socketkit serve echo`). Quoted: the rate, the terminator's CPU
per handshake and per GB, and ratios to HAProxy and stunnel (median of paired rounds).

Rounds are interleaved (A B C D, D C B A, ...) and medians reported. With two or more
cores the servers are pinned to the last core and the load to the first (`taskset`), so
each side has a core to itself; `--no-pin` turns that off. stunnel and HAProxy are
started by the script and skipped with a printed reason when missing (Debian packages
stunnel4, haproxy). Everything runs on 127.0.0.1 and every wait is bounded.

    bench/tls_bench.py                         # 3 rounds of 5 s per contender and mode
    bench/tls_bench.py --rounds 1 --duration 1 # a quick check that it works
    bench/tls_bench.py --modes sni             # routing by SNI without terminating
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared", "bench"))
sys.path.insert(0, os.path.join(SHARED, "lib"))
import benchlib  # noqa: E402

SOCKETKIT = os.path.join(ROOT, "target", "release", "socketkit")
GREETING_HEX = "e4bda0e5a5bd"  # 你好


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_certificates(directory):
    """A CA and an ECDSA P-256 server certificate for localhost/127.0.0.1 signed by it."""
    ca_key, ca = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.pem")
    key, csr = os.path.join(directory, "server.key"), os.path.join(directory, "server.csr")
    cert, ext = os.path.join(directory, "server.pem"), os.path.join(directory, "server.ext")
    p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *p256, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=tls_bench CA")
    openssl("req", "-new", *p256, "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-out", cert, "-days", "2", "-extfile", ext)
    combined = os.path.join(directory, "haproxy.pem")  # HAProxy wants certificate and key in one file
    with open(combined, "w") as out:
        for part in (cert, key):
            with open(part) as f:
                out.write(f.read())
    return {"ca": ca, "cert": cert, "key": key, "combined": combined}


def stunnel_config(directory, backend_port, certs):
    path = os.path.join(directory, f"stunnel-{backend_port}.conf")
    with open(path, "w") as f:
        f.write(f"""foreground = yes
pid =
syslog = no
debug = 3
[tls]
accept = 127.0.0.1:@PORT@
connect = 127.0.0.1:{backend_port}
cert = {certs['cert']}
key = {certs['key']}
""")
    return path


# One thread, as the other contenders run one.
HAPROXY_HEAD = """global
    maxconn 4000
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
"""


def haproxy_config(directory, backend_port, certs):
    path = os.path.join(directory, f"haproxy-{backend_port}.cfg")
    with open(path, "w") as f:
        f.write(HAPROXY_HEAD + f"""frontend tls
    bind 127.0.0.1:@PORT@ ssl crt {certs['combined']}
    default_backend plain
backend plain
    server backend 127.0.0.1:{backend_port}
""")
    return path


def haproxy_sni_config(directory, backend_port):
    path = os.path.join(directory, f"haproxy-sni-{backend_port}.cfg")
    with open(path, "w") as f:
        f.write(HAPROXY_HEAD + f"""frontend passthrough
    bind 127.0.0.1:@PORT@
    tcp-request inspect-delay 5s
    tcp-request content accept if {{ req_ssl_hello_type 1 }}
    use_backend named if {{ req_ssl_sni -i localhost }}
    default_backend other
backend named
    server backend 127.0.0.1:{backend_port}
backend other
    server backend 127.0.0.1:{backend_port}
""")
    return path


# Starts COMMAND... CONFIG with @PORT@ in the config replaced by the server's port (benchlib
# picks the port and fills {port} in the command line, not in files).
WITH_PORT = 'f="$2.$1"; sed "s/@PORT@/$1/" "$2" > "$f" && shift 2 && exec "$@" "$f"'


def with_config(template, *command):
    return ["sh", "-c", WITH_PORT, "sh", "{port}", template, *command]


def contenders(mode, backend_port, certs, scratch):
    """name -> argv (with {port}), for every terminator whose program is installed."""
    tls = ["--tls-cert", certs["cert"], "--tls-key", certs["key"]]
    if mode == "sni":
        relay = [SOCKETKIT, "forward", "-q", "--workers", "1", "-l", "127.0.0.1:{port}",
                 "--to", f"127.0.0.1:{backend_port}"]
        found = {"socketkit forward --sni-route": [*relay, "--sni-route", f"localhost=127.0.0.1:{backend_port}"],
                 "socketkit forward, no routing": relay}
        if shutil.which("haproxy"):
            found["haproxy"] = with_config(haproxy_sni_config(scratch, backend_port), "haproxy", "-db", "-f")
        else:
            benchlib.log("skipping HAProxy: not installed (apt install haproxy)")
        return found
    service = "greeting" if mode == "greeting" else "echo"
    found = {
        "socketkit forward": [SOCKETKIT, "forward", "-q", "--workers", "1", "-l", "tls:127.0.0.1:{port}",
                              "--to", f"127.0.0.1:{backend_port}", *tls],
        "socketkit serve": [SOCKETKIT, "serve", service, "-q", "--workers", "1", "-l", "tls:127.0.0.1:{port}", *tls],
    }
    stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    if stunnel:
        found["stunnel"] = with_config(stunnel_config(scratch, backend_port, certs), stunnel)
    else:
        benchlib.log("skipping stunnel: not installed (apt install stunnel4)")
    haproxy = shutil.which("haproxy")
    if haproxy:
        found["haproxy"] = with_config(haproxy_config(scratch, backend_port, certs), haproxy, "-db", "-f")
    else:
        benchlib.log("skipping HAProxy: not installed (apt install haproxy)")
    return found


def pinned(argv, cpu, pin):
    return (["taskset", "-c", str(cpu)] if pin else []) + argv


def bench(port, mode, certs, args, load_cpu):
    # --insecure-load skips the load's certificate-chain check (the handshake signature is
    # still verified), so that the load, not the server, is less often the limit.
    trust = ["--tls-insecure"] if args.insecure_load else ["--tls-ca", certs["ca"]]
    argv = [SOCKETKIT, "bench", f"tls:127.0.0.1:{port}", "--mode", "echo" if mode == "echo" else "greeting",
            "--json", "-q",
            *trust, "--tls-sni", "localhost",
            "-d", f"{round(args.duration * 1000)}ms", "--warmup", f"{round(args.warmup * 1000)}ms",
            "--timeout", "5s", "--threads", str(args.load_threads)]
    if mode in ("greeting", "sni"):
        argv += ["-c", str(args.conc), "--expect-hex", GREETING_HEX]
    else:
        argv += ["-c", str(args.echo_conc), "--size", "16384", "--window", "65536"]
    limit = args.duration + args.warmup + 30
    out = subprocess.run(pinned(argv, load_cpu, args.pin), capture_output=True, timeout=limit)
    if not out.stdout:
        raise RuntimeError(f"bench printed nothing: {out.stderr.decode(errors='replace')}")
    return json.loads(out.stdout)


def one_round(name, argv, mode, certs, args, cpus):
    with benchlib.Server(name.replace(" ", "_") + f"_{mode}", pinned(argv, cpus[1], args.pin)) as server:
        server.wait_ready()
        cpu0 = server.cpu_s()
        report = bench(server.port, mode, certs, args, cpus[0])
        cpu = server.cpu_s() - cpu0
    errors = sum(report["errors"].values())
    row = {"rate_per_s": round(report["rate_per_s"], 1), "mb_per_s": round(report["mb_per_s"], 2),
           "p50_ms": report["latency_ms"]["p50"], "p99_ms": report["latency_ms"]["p99"],
           "errors": errors, "cpu_s": round(cpu, 3)}
    # CPU of the whole measured span (warm-up included), per unit of the measured work.
    done = report["completed"] * (args.duration + args.warmup) / max(args.duration, 1e-9)
    if mode in ("greeting", "sni") and report["completed"]:
        row["cpu_ms_per_handshake"] = round(1000 * cpu / done, 3)
    gb = report["mb_per_s"] * (args.duration + args.warmup) / 1000
    if mode == "echo" and gb:
        row["cpu_s_per_gb"] = round(cpu / gb, 3)
    return row


def median(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(vals), 3) if vals else None


def ratio(runs, ours, theirs, key):
    pairs = [(a[key], b[key]) for a, b in zip(runs[ours], runs[theirs]) if b[key]]
    return round(statistics.median(a / b for a, b in pairs), 2) if pairs else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5, help="seconds measured per run")
    ap.add_argument("--warmup", type=float, default=1, help="seconds before measuring")
    ap.add_argument("--conc", type=int, default=32, help="greeting: handshakes in flight")
    ap.add_argument("--echo-conc", type=int, default=4, help="echo: connections")
    ap.add_argument("--modes", default="greeting,echo")
    ap.add_argument("--load-threads", type=int, default=1,
                    help="threads of socketkit bench (its client handshakes cost as much as the server's)")
    ap.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin servers and load to cores")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--insecure-load", action="store_true",
                    help="the load does not verify certificate chains (cheaper per handshake)")
    args = ap.parse_args()
    if not shutil.which("openssl"):
        sys.exit("openssl is needed to make the certificates (apt install openssl)")
    cores = os.cpu_count() or 1
    args.pin = args.pin and cores >= 2 and shutil.which("taskset") is not None
    # The load on the first core(s), the servers on the last.
    cpus = ("0" if args.load_threads <= 1 else f"0-{min(args.load_threads, cores - 1) - 1}", cores - 1)
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        subprocess.run([os.path.join(SHARED, "build.sh")], check=True, env={**os.environ, "NO_APT": "1"},
                       stdout=subprocess.DEVNULL)
    backends = {"greeting": os.path.join(benchlib.BUILD, "greet_epoll"),
                "echo": os.path.join(benchlib.BUILD, "echo_epoll")}
    result = {"machine": benchlib.machine_info(), "params": vars(args), "modes": {}}
    with tempfile.TemporaryDirectory(prefix="tls_bench-") as scratch:
        certs = make_certificates(scratch)
        for mode in args.modes.split(","):
            if mode == "sni":
                backend_argv = [SOCKETKIT, "serve", "greeting", "-q", "-l", "tls:127.0.0.1:{port}",
                                "--tls-cert", certs["cert"], "--tls-key", certs["key"]]
            elif os.path.exists(backends[mode]):
                backend_argv = [backends[mode], "--listen", "127.0.0.1:{port}"]
            else:
                backend_argv = [SOCKETKIT, "serve", mode, "-q", "-l", "127.0.0.1:{port}"]
            with benchlib.Server(f"tls_backend_{mode}", pinned(backend_argv, cpus[1], args.pin)) as backend:
                backend.wait_ready()
                names = contenders(mode, backend.port, certs, scratch)
                runs = {name: [] for name in names}
                for rnd in range(args.rounds):
                    order = list(names) if rnd % 2 == 0 else list(reversed(names))
                    for name in order:
                        benchlib.log(f"{mode} round {rnd + 1}: {name}")
                        runs[name].append(one_round(name, names[name], mode, certs, args, cpus))
            result["modes"][mode] = summarize(mode, runs)
    print(json.dumps(result), file=sys.stderr)


def summarize(mode, runs):
    key = "mb_per_s" if mode == "echo" else "rate_per_s"
    cost = "cpu_s_per_gb" if mode == "echo" else "cpu_ms_per_handshake"
    unit = "MB/s" if mode == "echo" else "handshakes/s"
    summary = {}
    print(f"\n{mode}: {unit} (median), the terminator's CPU ({cost}), ratios (median of paired rounds)")
    print(f"| contender | {unit} | p99 ms | {cost} | errors | vs HAProxy | vs stunnel |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in runs.items():
        line = {key: median(rows, key), "p99_ms": median(rows, "p99_ms"), cost: median(rows, cost),
                "errors": sum(r["errors"] for r in rows), "runs": rows}
        for peer in ("haproxy", "stunnel"):
            if peer in runs and peer != name:
                line[f"vs_{peer}"] = ratio(runs, name, peer, key)
        summary[name] = line
        print(f"| {name} | {line[key]} | {line['p99_ms']} | {line[cost]} | {line['errors']} "
              f"| {line.get('vs_haproxy', '—')} | {line.get('vs_stunnel', '—')} |")
    return summary


if __name__ == "__main__":
    main()
