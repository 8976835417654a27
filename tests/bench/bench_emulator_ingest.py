#!/usr/bin/python3
"""How fast the GCP emulator's ingestion side is, so that tests of datos-loader with a
100,000-message backlog measure the loader, not the stand-in for Google.

Two measurements, each over several rounds on a fresh emulator state (median printed):
- Pub/Sub: publish 100,000 messages (~200-byte JSON records) in 1,000-message requests,
  then drain the subscription with pulls of 1,000 and one acknowledge per pull, plus one
  modifyAckDeadline of every ackId of the pull before the ack (what the loader does to
  keep leases alive). Also checks that pull and ack cost the same late in the drain as at
  its start (they must be O(batch), not O(backlog)).
- BigQuery: one load job (multipart upload) of 100,000 NDJSON rows into the product's
  table, until it is DONE, and the row count read back.

    /usr/bin/python3 tests/bench/bench_emulator_ingest.py [--rounds 3] [--messages 100000]
        [--persist]   # with --data-dir: every request's changes fsync'd before the answer
"""
import argparse
import base64
import http.client
import json
import os
import statistics
import sys
import time
import uuid

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [_REPO, os.path.join(_REPO, "emulator"), os.path.join(_REPO, "tests")]

from gcpemu.client import Emulator, ndjson  # noqa: E402
from tools.httpd import TEST_TMP  # noqa: E402


class Client:
    """Keep-alive JSON calls, compact answers (what a C client gets with prettyPrint=false)."""

    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method, path, body=None, raw=None, headers=None):
        hdrs = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        sep = "&" if "?" in path else "?"
        self.c.request(method, path + sep + "prettyPrint=false", body=data, headers=hdrs)
        r = self.c.getresponse()
        out = r.read()
        if r.status != 200:
            raise SystemExit("%s %s -> %d %s" % (method, path, r.status, out[:300]))
        return json.loads(out) if out else None


def record(i):
    return json.dumps({"id": "id-%07d" % i, "contenido": "dato numero %d " % i + "x" * 120,
                       "timestamp": "2024-01-14T14:%02d:%02d.%06dZ"
                                    % (i // 60 % 60, i % 60, i % 1000000)}).encode()


def bench_pubsub(emu, n):
    c = Client(emu.port)
    p = "/v1/projects/%s" % emu.project
    c.call("PUT", p + "/topics/bench-topic", {})
    c.call("PUT", p + "/subscriptions/bench-sub",
           {"topic": "projects/%s/topics/bench-topic" % emu.project, "ackDeadlineSeconds": 600})
    payloads = [base64.b64encode(record(i)).decode() for i in range(n)]
    t0 = time.perf_counter()
    for i in range(0, n, 1000):
        c.call("POST", p + "/topics/bench-topic:publish",
               {"messages": [{"data": d, "attributes": {"source": "bench"}}
                             for d in payloads[i:i + 1000]]})
    t_pub = time.perf_counter() - t0
    t1 = time.perf_counter()
    got = 0
    pulls, acks = [], []
    while True:
        a = time.perf_counter()
        r = c.call("POST", p + "/subscriptions/bench-sub:pull",
                   {"maxMessages": 1000, "returnImmediately": True})
        pulls.append(time.perf_counter() - a)
        msgs = r.get("receivedMessages", [])
        if not msgs:
            break
        got += len(msgs)
        ids = [m["ackId"] for m in msgs]
        c.call("POST", p + "/subscriptions/bench-sub:modifyAckDeadline",
               {"ackIds": ids, "ackDeadlineSeconds": 600})
        a = time.perf_counter()
        c.call("POST", p + "/subscriptions/bench-sub:acknowledge", {"ackIds": ids})
        acks.append(time.perf_counter() - a)
    t_drain = time.perf_counter() - t1
    if got != n:
        raise SystemExit("drained %d of %d messages" % (got, n))
    k = max(1, len(acks) // 10)
    early = statistics.median(pulls[:k]) + statistics.median(acks[:k])
    late = statistics.median(pulls[-k - 1:-1]) + statistics.median(acks[-k:])
    return t_pub, t_drain, late / early


def bench_load(emu, n):
    c = Client(emu.port)
    emu.create_dataset("latam_dataset")
    emu.create_datos_table()
    data = ndjson(json.loads(record(i)) for i in range(n))
    job = {"configuration": {"load": {
        "destinationTable": {"projectId": emu.project, "datasetId": "latam_dataset",
                             "tableId": "datos"},
        "sourceFormat": "NEWLINE_DELIMITED_JSON"}},
        "jobReference": {"projectId": emu.project, "jobId": "bench_" + uuid.uuid4().hex}}
    b = "bench_" + uuid.uuid4().hex
    body = (("--%s\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n" % b).encode() +
            json.dumps(job).encode() +
            ("\r\n--%s\r\nContent-Type: application/octet-stream\r\n\r\n" % b).encode() +
            data + ("\r\n--%s--\r\n" % b).encode())
    t0 = time.perf_counter()
    r = c.call("POST", "/upload/bigquery/v2/projects/%s/jobs?uploadType=multipart" % emu.project,
               raw=body, headers={"Content-Type": "multipart/related; boundary=" + b})
    while r["status"]["state"] != "DONE":
        r = c.call("GET", "/bigquery/v2/projects/%s/jobs/%s?location=%s"
                   % (emu.project, r["jobReference"]["jobId"], r["jobReference"]["location"]))
    elapsed = time.perf_counter() - t0
    if r["status"].get("errorResult") or r["statistics"]["load"]["outputRows"] != str(n):
        raise SystemExit("load failed: %s" % json.dumps(r["status"])[:500])
    t = c.call("GET", "/bigquery/v2/projects/%s/datasets/latam_dataset/tables/datos"
               % emu.project)
    if t["numRows"] != str(n):
        raise SystemExit("table has %s rows, expected %d" % (t["numRows"], n))
    return elapsed, len(data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--persist", action="store_true", help="run the emulator with --data-dir")
    args = ap.parse_args()
    work = os.path.join(TEST_TMP, "emulator-ingest-bench")
    extra = ("--data-dir", os.path.join(work, "data")) if args.persist else ()
    emu = Emulator(work, extra_args=extra)
    emu.start()
    pub, drain, ratio, load, size = [], [], [], [], 0
    try:
        for _ in range(args.rounds):
            emu.reset()
            a, b, r = bench_pubsub(emu, args.messages)
            pub.append(a)
            drain.append(b)
            ratio.append(r)
            emu.reset()
            t, size = bench_load(emu, args.messages)
            load.append(t)
    finally:
        emu.stop()
    n = args.messages
    med = statistics.median
    print("| %d messages / rows, median of %d rounds%s | seconds | per second |"
          % (n, args.rounds, ", --data-dir" if args.persist else ""))
    print("|---|---|---|")
    print("| Pub/Sub publish (1,000 per request) | %.2f | %.0f |" % (med(pub), n / med(pub)))
    print("| Pub/Sub drain (pull 1,000 + modifyAckDeadline + ack) | %.2f | %.0f |"
          % (med(drain), n / med(drain)))
    print("| Pub/Sub publish + drain | %.2f | |" % (med(pub) + med(drain)))
    print("| BigQuery load job, %.1f MB NDJSON, to DONE | %.2f | %.0f |"
          % (size / 1e6, med(load), n / med(load)))
    print()
    print("pull+ack time late in the drain / early in the drain: %.2f (about 1 = O(batch))"
          % med(ratio))


if __name__ == "__main__":
    main()
