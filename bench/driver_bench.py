#!/usr/bin/env python3
"""`socketkit bench` against the C `loadgen`, both driving the C greeting server
(greet_epoll) in the same run, rounds interleaved: connections per second and the load
generator's own CPU per connection (user + system, from getrusage of the child).
Loopback only; every run is bounded by its duration."""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "bench"))
sys.path.insert(0, os.path.join(SHARED, "lib"))
import benchlib  # noqa: E402

SOCKETKIT = os.path.join(HERE, "..", "target", "release", "socketkit")


def timed(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError(f"{cmd[0]} gave no JSON: {out.stderr.strip()}")
    return json.loads(lines[-1]), cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--conc", type=int, default=64)
    args = ap.parse_args()
    greet = os.path.join(benchlib.BUILD, "greet_epoll")
    runs = {"loadgen": [], "socketkit bench": []}
    with benchlib.Server("greet_epoll", [greet, "--listen", "127.0.0.1:{port}"]) as server:
        server.wait_ready()
        for rnd in range(args.rounds):
            order = ["loadgen", "socketkit bench"] if rnd % 2 == 0 else ["socketkit bench", "loadgen"]
            for name in order:
                if name == "loadgen":
                    cmd = [benchlib.LOADGEN, "conn", "--port", str(server.port), "-c", str(args.conc),
                           "-d", str(args.duration), "-w", "1", "--expect-hex", benchlib.GREETING_HEX]
                else:
                    cmd = [SOCKETKIT, "bench", f"127.0.0.1:{server.port}", "-c", str(args.conc),
                           "-d", str(args.duration), "--warmup", "1", "--expect-hex", benchlib.GREETING_HEX, "--json"]
                result, cpu = timed(cmd)
                done = result.get("completed", 0)
                rate = result.get("conn_per_s") or result.get("rate_per_s")
                total = args.duration + 1
                runs[name].append({"conn_per_s": rate, "cpu_us_per_conn": cpu * 1e6 * args.duration / total / max(done, 1)})
                benchlib.log(f"round {rnd + 1} {name}: {rate:.0f} conn/s")
    med = {k: {m: round(statistics.median(r[m] for r in v), 2) for m in ("conn_per_s", "cpu_us_per_conn")} for k, v in runs.items()}
    ratio = {m: round(statistics.median(a[m] / b[m] for a, b in zip(runs["socketkit bench"], runs["loadgen"])), 3)
             for m in ("conn_per_s", "cpu_us_per_conn")}
    print(json.dumps({"medians": med, "ratio_bench_vs_loadgen": ratio, "runs": runs}))


if __name__ == "__main__":
    main()
