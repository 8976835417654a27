#!/usr/bin/python3
"""datos-loader (issue 11, sections 4 and 5): the parse + validate + encode
microbenchmark (build/bench/bench_record, docs/design.md's mix), a 100,000-message
backlog drained by one run of the real binary against the emulator, and the
loader's peak RSS against its batch size.

The loader runs on CPU 1, the emulator (Pub/Sub and BigQuery) on CPU 0; the
CPU each used during the run says which bound the wall time. The loader's
CPU and peak RSS come from GNU time (see run_loader).

    /usr/bin/python3 tests/bench/bench_loader.py [--messages 100000]
"""
import argparse
import json
import os
import random
import re
import subprocess
import time

import benchlib as B
from benchlib import echo, section

from gcpemu.client import Emulator  # noqa: E402
from tools.httpd import TEST_TMP  # noqa: E402
from harness.loader import PIPELINE, Loader, make_pipeline  # noqa: E402
from bench_read import emulator_command  # noqa: E402

BENCH_RECORD = os.path.join(B.BENCH_BUILD, "bench_record")
LOADER_CPU = B.CLIENT_CPU
EMULATOR_CPU = B.SERVER_CPU

WORDS = ("prueba ", "autom\u00e1tica ", "n\u00famero ", "datos ", "sensor ", "lectura ",
         "estaci\u00f3n ", "temperatura ", "ma\u00f1ana ", "valor ")


def micro():
    section("loader: parse + validate + encode microbenchmark")
    rounds = "3" if B.QUICK else "7"
    messages = "20000" if B.QUICK else "50000"
    p = B.run(["taskset", "-c", LOADER_CPU, BENCH_RECORD, "--messages", messages,
               "--rounds", rounds], check=False)
    out = p.stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"^\| (pull .*?) \| (\d+) \| (\d+) \| (\d+) \| ([\d.]+) \|$", line)
        if m:
            rows.append({"pipeline": m.group(1), "msgs": int(m.group(2)),
                         "mbs_data": int(m.group(3)), "mbs_json": int(m.group(4)),
                         "slowest_fastest": float(m.group(5))})
    summary = re.search(r"^\d+ messages .*$", out, re.M)
    if not rows:
        raise SystemExit("bench_record printed no table:\n" + out + p.stderr)
    return {"rc": p.returncode, "rows": rows, "summary": summary.group(0) if summary else "",
            "messages": int(messages), "rounds": int(rounds)}


def text(rng, n):
    out = []
    size = 0
    while size < n:
        w = rng.choice(WORDS)
        out.append(w)
        size += len(w.encode("utf-8"))
    return "".join(out).encode("utf-8")[:n].decode("utf-8", "ignore")


def mix(n, now, seed=11):
    """docs/design.md's mix: message data 90% 100-300 B, 9% 1-4 KiB, 1% 64 KiB;
    10% of the messages invalid, spread over ten reasons."""
    rng = random.Random(seed)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 3600))
    out = []
    invalid = 0
    for i in range(n):
        cls = i % 100
        size = (rng.randrange(100, 301) if cls < 90 else rng.randrange(1024, 4097)
                if cls < 99 else 65536)
        kind = rng.randrange(10) if rng.random() < 0.10 else -1
        rid = "sensor-%07d" % i
        ts = "%s.%06dZ" % (base, i % 1_000_000)
        head = '{"id":"%s","contenido":"' % rid
        tail = '","timestamp":"%s"}' % ts
        body = text(rng, max(1, size - len(head) - len(tail)))
        data = (head + body + tail).encode("utf-8")
        if kind >= 0:
            invalid += 1
            data = [
                lambda: data.replace(ts.encode(), b"2999-01-01T00:00:00Z"),     # future
                lambda: data.replace(b'"id":"%s",' % rid.encode(), b""),         # missing id
                lambda: data[:-1] + b',"colour":"red"}',                         # unknown field
                lambda: data[:-1],                                               # not JSON
                lambda: b'{"id":"x",' + data[1:],                                # duplicate key
                lambda: data.replace(b"T", b" ", 1) if b"T" in data else b"",    # bad timestamp
                lambda: data.replace(rid.encode(), b"x" * 300),                  # id too long
                lambda: data.replace(b'"contenido":"', b'"contenido":12,"x":"'),  # bad field
                lambda: data[:len(head)] + b"\xff" + data[len(head) + 1:],       # not UTF-8
                lambda: data.replace(b'.%06dZ' % (i % 1_000_000), b".1234567Z"),  # 7 digits
            ][kind]()
        out.append(data)
    return out, invalid


def small(n, now):
    """Records as a sensor sends them, about 120 bytes each, all valid."""
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 3600))
    return [('{"id":"sensor-%07d","contenido":"lectura %d de la estaci\u00f3n norte",'
             '"timestamp":"%s.%06dZ"}' % (i, i, base, i % 1_000_000)).encode("utf-8")
            for i in range(n)]


def start_emulator(name):
    emu = Emulator(os.path.join(TEST_TMP, "bench-emu-" + name))
    echo(emulator_command(emu))
    emu.start()
    B.pin(emu.proc.pid, EMULATOR_CPU)
    return emu


def run_loader(loader):
    """One run of the real binary, pinned; wall time, the loader's own
    rusage, and the emulator's CPU over the same time.

    The rusage comes from wait4 in /usr/bin/time, not in this script: Linux
    keeps a process's peak RSS across exec, so a child forked from this
    Python process (which holds the whole backlog) would report Python's
    size as its own peak. GNU time is small, so what it reports is the
    loader's."""
    usage = os.path.join(loader.dir, "time.out")
    cmd = ["/usr/bin/time", "-f", "%U %S %M", "-o", usage,
           "taskset", "-c", LOADER_CPU] + loader.command()
    echo(cmd)
    emu_cpu0 = B.proc_cpu_seconds(loader.emulator.proc.pid)
    t0 = time.monotonic()
    err_path = os.path.join(loader.dir, "run.stderr")
    with open(err_path, "w") as err:
        p = subprocess.Popen(cmd, env=loader.environ(), stdout=subprocess.DEVNULL, stderr=err)
        p.wait()
    wall = time.monotonic() - t0
    emu_cpu = B.proc_cpu_seconds(loader.emulator.proc.pid) - emu_cpu0
    with open(usage) as f:
        user, sys_, maxrss = f.read().split()[-3:]
    events = []
    with open(err_path) as f:
        for line in f:
            try:
                events.append(json.loads(line))
            except ValueError:
                pass
    fin = [e for e in events if e.get("event") == "run_finished"]
    return {"rc": p.returncode, "wall_s": wall, "user_s": float(user), "sys_s": float(sys_),
            "maxrss_kb": int(maxrss), "emulator_cpu_s": emu_cpu,
            "finished": fin[-1] if fin else None,
            "batches": len([e for e in events if e.get("event") == "batch_loaded"])}


def backlog_run(emu, name, messages, n_valid, **settings):
    make_pipeline(emu)
    t0 = time.monotonic()
    echo("# publish %d messages to %s (emulator REST, 1,000 per request)"
         % (len(messages), PIPELINE["topic"]))
    emu.publish(PIPELINE["topic"], messages)
    publish_s = time.monotonic() - t0
    loader = Loader(emu, name, sanitize=False, max_seconds="600s", **settings)
    r = run_loader(loader)
    r["publish_s"] = publish_s
    r["settings"] = settings
    fin = r["finished"] or {}
    r["ok"] = (r["rc"] == 0 and fin.get("rows_loaded") == n_valid and fin.get("drained") is True
               and emu.pull(PIPELINE["subscription"]) == [])
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20000 if B.QUICK else 100000)
    ap.add_argument("--batch-messages", type=int, default=10000 if B.QUICK else 30000)
    ap.add_argument("--out", default=os.path.join(B.BENCH_BUILD, "data", "loader.json"))
    args = ap.parse_args()
    data = {"micro": micro()}

    section("loader: %d messages drained by one run" % args.messages)
    emu = start_emulator("loader")
    try:
        data["e2e"] = []
        for kind in ("mix", "small"):
            if kind == "mix":
                messages, invalid = mix(args.messages, emu.now())
            else:
                messages, invalid = small(args.messages, emu.now()), 0
            e2e = backlog_run(emu, "bench-e2e-" + kind, messages, args.messages - invalid)
            e2e["kind"] = kind
            e2e["messages"] = args.messages
            e2e["invalid"] = invalid
            e2e["data_bytes"] = sum(len(m) for m in messages)
            e2e["load_jobs_at_emulator"] = len([j for j in emu.jobs()
                                                if j.get("jobType") == "LOAD"])
            data["e2e"].append(e2e)

        section("loader: peak RSS against batch size (%d messages each)" % args.batch_messages)
        messages, invalid = mix(args.batch_messages, emu.now(), seed=12)
        sizes = [1000, 5000, args.batch_messages] if B.QUICK else [1000, 5000, 10000, 30000]
        series = []
        for rows in sizes:
            r = backlog_run(emu, "bench-batch-%d" % rows, messages,
                            args.batch_messages - invalid, batch_max_rows=rows)
            r["batch_max_rows"] = rows
            series.append(r)
        data["batch_rss"] = {"messages": args.batch_messages, "invalid": invalid,
                             "data_bytes": sum(len(m) for m in messages), "runs": series}
    finally:
        emu.stop()
    data["commands"] = B.COMMANDS
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(data, f, indent=1)
    print("wrote %s" % args.out)


if __name__ == "__main__":
    main()
