#!/usr/bin/env python3
"""Client-side throughput, side by side in the same run (issue: the client side):

* forward: loadgen (echo mode, bulk) -> relay -> echo_epoll, for `socketkit forward` and
  `socat TCP-LISTEN:...,fork TCP:...`; MB/s echoed through the relay and the relay's CPU.
* forward, one way: iperf3 -c through the relay to iperf3 -s (one bulk connection, the
  way relays are usually measured); skipped with a printed reason when iperf3 is missing.
* connect: N MiB from stdin through echo_epoll and back to stdout, for `socketkit connect`
  and `nc -N`; MB/s of the round trip (wall clock) and the client's CPU.

Rounds are interleaved (A B, B A, ...) and medians reported, with ratios to the peer.
Everything runs on 127.0.0.1 and is bounded in time. Uses ../shared/bench (benchlib,
loadgen, echo_epoll): run ../shared/bench/build.sh first, or let this script do it."""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "bench"))
sys.path.insert(0, os.path.join(SHARED, "lib"))
import benchlib  # noqa: E402

# SOCKETKIT_BIN measures another build (e.g. the one before a change) with the same script.
SOCKETKIT = os.environ.get("SOCKETKIT_BIN") or os.path.join(HERE, "..", "target", "release", "socketkit")


def forward_round(name, argv_for, echo_port, args):
    argv = [a.replace("{target}", f"127.0.0.1:{echo_port}") for a in argv_for]
    with benchlib.Server(name, argv) as relay:
        relay.wait_ready()
        r = benchlib.measure_echo(relay, conc=args.conc, duration=args.duration,
                                  warmup=1, block=65536, window=262144)
    return {"mb_per_s": r["mb_per_s"], "cpu_s_per_gb": r["server_cpu_s_per_gb"],
            "errors": r.get("errors", 0)}


def oneway_round(name, argv_for, sink_port, duration):
    """One iperf3 client through the relay to the iperf3 server: MB/s received, relay CPU."""
    argv = [a.replace("{target}", f"127.0.0.1:{sink_port}") for a in argv_for]
    with benchlib.Server(name, argv) as relay:
        relay.wait_ready()
        cpu0 = relay.cpu_s()
        out = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(relay.port), "-t", str(duration), "-J"],
                             capture_output=True, timeout=duration + 30)
        cpu = relay.cpu_s() - cpu0
    received = json.loads(out.stdout)["end"]["sum_received"]
    gb = received["bytes"] / 1e9
    return {"mb_per_s": round(received["bytes"] / 1e6 / received["seconds"], 1),
            "cpu_s_per_gb": round(cpu / gb, 3) if gb else None}


def connect_round(name, argv, echo_port, mib):
    """Pipe `mib` MiB of zeros through the client to the echo server and back."""
    cmd = [a.replace("{port}", str(echo_port)) for a in argv]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    src = subprocess.Popen(["head", "-c", f"{mib}M", "/dev/zero"], stdout=subprocess.PIPE)
    client = subprocess.Popen(cmd, stdin=src.stdout, stdout=subprocess.PIPE)
    src.stdout.close()
    got = 0
    while True:
        chunk = client.stdout.read(1 << 20)
        if not chunk:
            break
        got += len(chunk)
    client.wait(timeout=120)
    src.wait(timeout=10)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if got != mib << 20:
        raise RuntimeError(f"{name}: got {got} bytes back, expected {mib << 20}")
    return {"mb_per_s": round(2 * got / 1e6 / wall, 1), "cpu_s": round(cpu, 3)}


def median(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(vals), 3) if vals else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=4, help="seconds per forward test")
    ap.add_argument("--conc", type=int, default=4, help="loadgen connections through the relay")
    ap.add_argument("--mib", type=int, default=512, help="MiB per connect transfer")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--only-connect", action="store_true", help="skip the forward tests")
    ap.add_argument("--other-bin", default=None,
                    help="also measure `connect` and `forward` of this socketkit binary (e.g. the build before a change)")
    args = ap.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=os.path.join(HERE, ".."), check=True)
        subprocess.run([os.path.join(SHARED, "build.sh")], check=True, env={**os.environ, "NO_APT": "1"},
                       stdout=subprocess.DEVNULL)
    echo_bin = os.path.join(benchlib.BUILD, "echo_epoll")
    relays = {
        "socketkit forward": [SOCKETKIT, "forward", "-q", "-l", "127.0.0.1:{port}", "--to", "{target}"],
        "socketkit forward (copy)": ["env", "SOCKETKIT_NO_SPLICE=1", SOCKETKIT, "forward", "-q",
                                     "-l", "127.0.0.1:{port}", "--to", "{target}"],
        "socat fork": ["socat", "TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,backlog=1024", "TCP:{target}"],
    }
    oneway_relays = ["socketkit forward", "socketkit forward (copy)", "socat fork"]
    if args.other_bin:
        relays["other forward"] = [args.other_bin, "forward", "-q", "-l", "127.0.0.1:{port}", "--to", "{target}"]
        oneway_relays.append("other forward")
    iperf3 = shutil.which("iperf3")
    if not iperf3:
        benchlib.log("skipping the one-way forward test: iperf3 is not installed (apt install iperf3)")
    clients = {
        "socketkit connect": [SOCKETKIT, "connect", "127.0.0.1:{port}"],
        "nc -N": ["nc", "-N", "127.0.0.1", "{port}"],
    }
    if args.other_bin:
        clients["socketkit connect (other build)"] = [args.other_bin, "connect", "127.0.0.1:{port}"]
    if args.only_connect:
        relays, oneway_relays, iperf3 = {}, [], None
    fwd = {k: [] for k in relays}
    one = {k: [] for k in oneway_relays}
    con = {k: [] for k in clients}
    sink_argv = [iperf3 or "iperf3", "-s", "-B", "127.0.0.1", "-p", "{port}"]
    with benchlib.Server("echo_epoll", [echo_bin, "--listen", "127.0.0.1:{port}"]) as echo, \
            benchlib.Server("iperf3_sink", sink_argv if iperf3 else ["sleep", "3600"]) as sink:
        echo.wait_ready()
        if iperf3:
            sink.wait_ready()
        for rnd in range(args.rounds):
            if iperf3:
                order = oneway_relays if rnd % 2 == 0 else list(reversed(oneway_relays))
                for name in order:
                    benchlib.log(f"round {rnd + 1}: one way, {name}")
                    one[name].append(oneway_round(name.replace(" ", "_") + "_oneway", relays[name],
                                                  sink.port, args.duration))
            order = list(relays) if rnd % 2 == 0 else list(reversed(relays))
            for name in order:
                benchlib.log(f"round {rnd + 1}: {name}")
                fwd[name].append(forward_round(name.replace(" ", "_"), relays[name], echo.port, args))
            order = list(clients) if rnd % 2 == 0 else list(reversed(clients))
            for name in order:
                benchlib.log(f"round {rnd + 1}: {name}")
                con[name].append(connect_round(name, clients[name], echo.port, args.mib))
    result = {"machine": benchlib.machine_info(), "params": vars(args), "forward": {}, "connect": {}}
    for name, runs in fwd.items():
        result["forward"][name] = {"mb_per_s": median(runs, "mb_per_s"),
                                   "cpu_s_per_gb": median(runs, "cpu_s_per_gb"), "runs": runs}
    for name, runs in con.items():
        result["connect"][name] = {"mb_per_s": median(runs, "mb_per_s"), "cpu_s": median(runs, "cpu_s"), "runs": runs}
    for name, runs in one.items():
        result["forward_one_way"] = result.get("forward_one_way", {})
        result["forward_one_way"][name] = {"mb_per_s": median(runs, "mb_per_s"),
                                           "cpu_s_per_gb": median(runs, "cpu_s_per_gb"), "runs": runs}
    c_ratio = [a["mb_per_s"] / b["mb_per_s"] for a, b in zip(con["socketkit connect"], con["nc -N"])]
    result["ratio"] = {"connect_vs_nc": round(statistics.median(c_ratio), 2)}
    print("| test | socketkit MB/s | peer MB/s | ratio (median of paired rounds) | CPU |")
    print("|---|---|---|---|---|")
    if args.other_bin:
        other = con["socketkit connect (other build)"]
        o_ratio = statistics.median([a["mb_per_s"] / b["mb_per_s"] for a, b in zip(other, con["nc -N"])])
        result["ratio"]["other_build_connect_vs_nc"] = round(o_ratio, 2)
        print(f"| connect, other build ({args.mib} MiB round trip) | {median(other, 'mb_per_s')} "
              f"| nc {result['connect']['nc -N']['mb_per_s']} | {round(o_ratio, 2)} | {median(other, 'cpu_s')} s |")
    if args.only_connect:
        print(f"| connect ({args.mib} MiB round trip via echo_epoll) | {result['connect']['socketkit connect']['mb_per_s']} "
              f"| nc {result['connect']['nc -N']['mb_per_s']} | {result['ratio']['connect_vs_nc']} "
              f"| {result['connect']['socketkit connect']['cpu_s']} vs {result['connect']['nc -N']['cpu_s']} s |")
        print(json.dumps(result), file=sys.stderr)
        return
    f_ratio = [a["mb_per_s"] / b["mb_per_s"] for a, b in zip(fwd["socketkit forward"], fwd["socat fork"])]
    result["ratio"]["forward_vs_socat"] = round(statistics.median(f_ratio), 2)
    print(f"| forward (loadgen echo, {args.conc} conns, 64 KiB blocks) | {result['forward']['socketkit forward']['mb_per_s']} "
          f"| socat {result['forward']['socat fork']['mb_per_s']} | {result['ratio']['forward_vs_socat']} "
          f"| {result['forward']['socketkit forward']['cpu_s_per_gb']} vs {result['forward']['socat fork']['cpu_s_per_gb']} s/GB |")
    runs = fwd["socketkit forward (copy)"]
    ratio = statistics.median([a["mb_per_s"] / b["mb_per_s"] for a, b in zip(runs, fwd["socat fork"])])
    print(f"| forward, copy fallback (SOCKETKIT_NO_SPLICE=1) | {median(runs, 'mb_per_s')} "
          f"| socat {result['forward']['socat fork']['mb_per_s']} | {round(ratio, 2)} "
          f"| {median(runs, 'cpu_s_per_gb')} vs {result['forward']['socat fork']['cpu_s_per_gb']} s/GB |")
    if iperf3:
        ours, theirs = one["socketkit forward"], one["socat fork"]
        ratio = statistics.median([a["mb_per_s"] / b["mb_per_s"] for a, b in zip(ours, theirs)])
        result["ratio"]["forward_one_way_vs_socat"] = round(ratio, 2)
        print(f"| forward, one way (iperf3, 1 conn) | {median(ours, 'mb_per_s')} | socat {median(theirs, 'mb_per_s')} "
              f"| {round(ratio, 2)} | {median(ours, 'cpu_s_per_gb')} vs {median(theirs, 'cpu_s_per_gb')} s/GB |")
        copy = one["socketkit forward (copy)"]
        ratio = statistics.median([a["mb_per_s"] / b["mb_per_s"] for a, b in zip(copy, theirs)])
        print(f"| forward, one way, copy fallback | {median(copy, 'mb_per_s')} | socat {median(theirs, 'mb_per_s')} "
              f"| {round(ratio, 2)} | {median(copy, 'cpu_s_per_gb')} vs {median(theirs, 'cpu_s_per_gb')} s/GB |")
    print(f"| connect ({args.mib} MiB round trip via echo_epoll) | {result['connect']['socketkit connect']['mb_per_s']} "
          f"| nc {result['connect']['nc -N']['mb_per_s']} | {result['ratio']['connect_vs_nc']} "
          f"| {result['connect']['socketkit connect']['cpu_s']} vs {result['connect']['nc -N']['cpu_s']} s |")
    print(json.dumps(result), file=sys.stderr)


if __name__ == "__main__":
    main()
