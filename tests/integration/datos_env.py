"""Shared pieces of the mod_datos integration tests: the httpd snippet that
points mod_datos at the emulator, seed rows, and an independent oracle of
what /datos must answer for them."""
import datetime
import os
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


def clear_state(h):
    """Empties the server's DatosStateDir."""
    d = h.path("state")
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))


def cold(h):
    """A cold cache: no process copy, an empty shared tier (a graceful
    restart makes a new shmcb), and no answer on disk to seed it from."""
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
