"""Shared pieces of the mod_datos integration tests: the httpd snippet that
points mod_datos at the emulator, seed rows, and an independent oracle of
what /datos must answer for them."""
import datetime
import os
import re
import secrets
import time

import requests

PROJECT = "datos-local"
DATASET = "latam_dataset"
TABLE = "datos"
LOCATION = "southamerica-east1"

HANDLERS = """
<Location "/datos">
  SetHandler datos
</Location>
<Location "/health">
  SetHandler datos-health
</Location>
"""


# The two table shapes every suite that reads rows runs against: the one the
# loader makes, and the three-column table of the system datos replaces.
SHAPES = ["loader-table", "three-columns"]


def datos_conf(emulator, extra="", credentials="none", project=PROJECT, url=None,
               fresh_for=None, state_dir=True, timeout="60s"):
    """The httpd snippet an administrator would write, aimed at the emulator.
    fresh_for="0" is the uncached mode (one query per request), for suites about
    the fetch itself; the state directory is the server's own, never the
    system's /var/cache. The fetch budget (DatosTimeout) is generous, so that a
    busy machine never fails a fetch; a test about timeouts sets a short one."""
    lines = []
    if project:
        lines.append("DatosProject %s" % project)
    lines.append("DatosTable %s.%s" % (DATASET, TABLE))
    if credentials:
        lines.append("DatosCredentials %s" % credentials)
    lines.append("DatosBigQueryURL %s" % (url or emulator.base_url + "/bigquery/v2"))
    lines.append("DatosTimeout %s" % timeout)
    if fresh_for != "0":
        # as long as the budget (a shorter wait is a startup warning, DT0008)
        lines.append("DatosColdWait %s" % timeout)
    if fresh_for is not None:
        lines.append("DatosFreshFor %s" % fresh_for)
    lines.append('DatosStateDir "%s"' % ("${root}/state" if state_dir else "none"))
    return "\n".join(lines) + "\n" + extra + "\n" + HANDLERS


def rfc3339(epoch):
    dt = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def render_ts(epoch_us):
    """What mod_datos must print: six fraction digits only when non-zero."""
    secs, frac = divmod(epoch_us, 1_000_000)
    dt = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=secs)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += ".%06d" % frac
    return text + "+00:00"


def to_us(epoch):
    return int(round(epoch * 1_000_000))


class Row(dict):
    """A seeded row: timestamps kept as exact integer microseconds."""

    def wire(self):
        out = {"id": self["id"], "timestamp": rfc3339_us(self["ts_us"])}
        if self.get("contenido", None) is not None:
            out["contenido"] = self["contenido"]
        if self.get("message_id") is not None:
            out["message_id"] = self["message_id"]
        if self.get("pt_us") is not None:
            out["publish_time"] = rfc3339_us(self["pt_us"])
        return out


def rfc3339_us(us):
    secs, frac = divmod(us, 1_000_000)
    dt = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=secs)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + ".%06dZ" % frac


def row(id, ts_us, contenido="x", message_id=None, pt_us=None):
    return Row(id=id, ts_us=ts_us, contenido=contenido, message_id=message_id, pt_us=pt_us)


def expected_answer(rows, limit, shape="loader-table"):
    """The contract, computed independently of the SQL: one row per id, the
    newest by (timestamp, publish_time, message_id) with NULL lowest -- on the
    three-column table, by (timestamp, contenido); newest first, ties by id in
    byte order."""
    def version_key(r):
        if shape == "three-columns":
            return (r["ts_us"], (r["contenido"] is not None, r["contenido"] or ""))
        return (r["ts_us"],
                (r["pt_us"] is not None, r["pt_us"] or 0),
                (r["message_id"] is not None, r["message_id"] or ""))

    newest = {}
    for r in rows:
        cur = newest.get(r["id"])
        if cur is None or version_key(r) > version_key(cur):
            newest[r["id"]] = r
    ordered = sorted(newest.values(), key=lambda r: (-r["ts_us"], r["id"].encode("utf-8")))
    return [{"id": r["id"], "contenido": r["contenido"], "timestamp": render_ts(r["ts_us"])}
            for r in ordered[:limit]]


def seed(emulator, rows, fresh=True, shape="loader-table"):
    """Resets the emulator and creates the product's dataset and table (of
    the given shape) with rows."""
    if fresh:
        emulator.reset()
        emulator.create_dataset(DATASET, location=LOCATION)
        emulator.create_datos_table(DATASET, TABLE, loader_columns=(shape != "three-columns"))
    if rows:
        wire = [r.wire() for r in rows]
        if shape == "three-columns":
            wire = [{k: v for k, v in w.items() if k not in ("message_id", "publish_time")}
                    for w in wire]
        emulator.insert_rows(wire, DATASET, TABLE)


def ready(h, timeout=60):
    """Waits until GET /health?ready says the server has its answer: the
    warm start (a fetch at start, or the state directory's answer) is done,
    so what a test counts or sees next is its own doing."""
    def is_ready():
        try:
            return requests.get(h.url("/health?ready"), timeout=5).status_code == 200
        except requests.RequestException:
            return False
    if not wait_for(is_ready, timeout=timeout):
        raise AssertionError("%s never became ready:\n%s" % (h.name, h.tail_log()))


def log_size(h):
    """Where the error log ends now (for warmed's since)."""
    return os.path.getsize(h.log.path) if os.path.exists(h.log.path) else 0


def warmed(h, since=0, timeout=60):
    """Waits until the warm start is over: the server is ready, or its fetch
    failed (DT0201 in the error log past offset since)."""
    def over():
        try:
            if requests.get(h.url("/health?ready"), timeout=5).status_code == 200:
                return True
        except requests.RequestException:
            return False
        with open(h.log.path, "rb") as f:
            f.seek(since)
            return b"DT0201" in f.read()
    if not wait_for(over, timeout=timeout):
        raise AssertionError("%s never finished its warm start:\n%s" % (h.name, h.tail_log()))


def clear_state(h):
    """Empties the server's DatosStateDir."""
    d = h.path("state")
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))


def cold(h):
    """A cold start: no process copy, an empty shared tier (a graceful
    restart makes a new shmcb), and no answer on disk to seed it from, so
    the server fetches once, at once, in the background (its warm start)."""
    clear_state(h)
    h.graceful()


def contract_rows(now):
    """A table that exercises every ordering rule, all inside the last day."""
    now_us = int(now) * 1_000_000
    hour = 3_600_000_000
    rows = []
    # 40 ids with an older and a newer version each; the newer one wins.
    for i in range(40):
        rid = "id-%03d" % i
        ts = now_us - hour - i * 60_000_000 - 123_456  # fractional seconds
        rows.append(row(rid, ts - 5 * hour, contenido="old %d" % i, message_id="m%03da" % i))
        rows.append(row(rid, ts, contenido="new %d" % i, message_id="m%03db" % i))
    # Equal timestamps across ids: ordered by id ascending, byte order.
    tie = now_us - 30 * 60_000_000
    for rid in ("tie-b", "tie-a", "Tie-C", "tie-\u00e1"):
        rows.append(row(rid, tie, contenido="tie " + rid))
    # Same id and timestamp: the later publish_time wins, then message_id.
    same = now_us - 20 * 60_000_000
    rows.append(row("dup-pt", same, contenido="early publish", message_id="z", pt_us=same + 1))
    rows.append(row("dup-pt", same, contenido="late publish", message_id="a", pt_us=same + 2))
    rows.append(row("dup-mid", same, contenido="mid a", message_id="a", pt_us=same))
    rows.append(row("dup-mid", same, contenido="mid b", message_id="b", pt_us=same))
    rows.append(row("dup-null", same, contenido="no publish time", message_id="m"))
    rows.append(row("dup-null", same, contenido="has publish time", message_id="a", pt_us=same))
    # Whole seconds (no fraction), NULL contenido, text needing escapes.
    rows.append(row("whole-second", (now_us // 1_000_000 - 600) * 1_000_000, contenido="Prueba automática"))
    rows.append(row("null-contenido", now_us - 10 * 60_000_000, contenido=None))
    rows.append(row("escapes", now_us - 11 * 60_000_000, contenido='quote " backslash \\ newline \n tab \t \u2603'))
    return rows


def get(h, path, **kw):
    kw.setdefault("timeout", 120)
    return requests.get(h.url(path), **kw)


def wait_for(predicate, timeout=60.0, interval=0.05):
    """Until predicate() holds; a deadline generous enough for a busy machine."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# ---------------------------------------------------------------- cache suites

METRICS = """
<Location "/metrics">
  SetHandler datos-metrics
  Require ip 127.0.0.1
</Location>
"""


def many_rows(emulator, n=120, width=20, prefix="r"):
    """n rows within the last day: one query (the 7-day window) answers."""
    now_us = int(emulator.now()) * 1_000_000
    return [row("%s%03d" % (prefix, i), now_us - 3_600_000_000 - i * 1_000_000,
                contenido="c%d-" % i + "x" * width) for i in range(n)]


def queries(emulator):
    return emulator.count("bigquery.jobs.query")


def plain(h, path="/datos", **kw):
    """GET without gzip."""
    headers = dict(kw.pop("headers", {}))
    headers.setdefault("Accept-Encoding", "identity")
    return get(h, path, headers=headers, **kw)


def metric(h, name, **labels):
    """The value of one series in /metrics (0 when absent; summed over the
    series that match when labels leave some out)."""
    text = get(h, "/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def write_secret(h, name="cache.secret", content=None):
    """A DatosCacheSecretFile: random text, mode 0600, owned by the user
    that starts httpd. Returns its path and its bytes as the module uses
    them (trailing white space cut)."""
    content = content or secrets.token_urlsafe(48) + "\n"
    path = h.write_file(name, content, mode=0o600)
    return path, content.rstrip(" \t\r\n").encode()


def fleet_conf(kind, address, secret_path, fresh="2s"):
    """A fleet tier (memcache or redis) with its secret file."""
    module = {"memcache": "socache_memcache", "redis": "socache_redis"}[kind]
    return ('LoadModule %s_module /usr/lib/apache2/modules/mod_%s.so\n'
            'DatosCache %s:%s\nDatosCacheSecretFile "%s"\nDatosFreshFor %s\n'
            'DatosStaleWhileRevalidate 60s\n'
            % (module, module, kind, address, secret_path, fresh))
