"""GET /datos-status: the page an administrator opens, and its ?json form,
from a real httpd against the emulator. What a person sees is read from
the DOM that headless Chromium renders (Debian's chromium, installed by
make deps); the JSON form is checked against its documented schema
(docs/schemas/datos-status.schema.json) by the small validator below."""
import html.parser
import json
import os
import re
import shutil
import subprocess
import time

import pytest
import requests

from datos_env import (contract_rows, datos_conf, get, log_size, queries, ready, seed, wait_for,
                       warmed)
from harness.loader import PIPELINE, Loader, make_pipeline
from tools.httpd import Httpd, register_server, unregister_server

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA = os.path.join(ROOT, "docs", "schemas", "datos-status.schema.json")
# DATOS_STATUS_MAX_BYTES in libdatos/serve/datos_status.h
MAX_BYTES = 512 * 1024

STATUS = """
<Location "/datos-status">
  SetHandler datos-status
  Require local
</Location>
"""

BIGQUERY = ("bigquery.jobs.query", "bigquery.jobs.getQueryResults", "bigquery.tables.get",
            "bigquery.datasets.get")


# ------------------------------------------------------------ the validator

def _type_ok(value, t):
    if t == "null":
        return value is None
    if t == "boolean":
        return isinstance(value, bool)
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "string":
        return isinstance(value, str)
    if t == "array":
        return isinstance(value, list)
    if t == "object":
        return isinstance(value, dict)
    raise AssertionError("the schema uses type %r, which the validator does not know" % t)


def validate(value, schema, root, path="$"):
    """The part of JSON Schema 2020-12 the document's schema uses: $ref to
    $defs, type, enum, oneOf, properties, required, additionalProperties,
    items, maxItems, maxLength, minimum, pattern. Returns the errors."""
    known = {"$schema", "$id", "title", "description", "$defs", "$ref", "type", "enum",
             "oneOf", "properties", "required", "additionalProperties", "items", "maxItems",
             "maxLength", "minimum", "pattern"}
    unknown = set(schema) - known
    assert not unknown, "the validator does not implement %s" % sorted(unknown)
    if "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        return validate(value, root["$defs"][name], root, path)
    errors = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_type_ok(value, t) for t in types):
            return ["%s: %r is not of type %s" % (path, value, types)]
    if "enum" in schema and value not in schema["enum"]:
        errors.append("%s: %r is not one of %s" % (path, value, schema["enum"]))
    if "oneOf" in schema:
        matching = [s for s in schema["oneOf"] if not validate(value, s, root, path)]
        if len(matching) != 1:
            errors.append("%s: %r matches %d of oneOf" % (path, value, len(matching)))
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errors.append("%s: %s is missing" % (path, key))
        for key, v in value.items():
            if key in props:
                errors += validate(v, props[key], root, "%s.%s" % (path, key))
            elif schema.get("additionalProperties") is False:
                errors.append("%s: %s is not in the schema" % (path, key))
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += validate(v, schema["additionalProperties"], root,
                                   "%s.%s" % (path, key))
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append("%s: %d items, more than %d" % (path, len(value), schema["maxItems"]))
        for i, v in enumerate(value):
            errors += validate(v, schema.get("items", {}), root, "%s[%d]" % (path, i))
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append("%s: longer than %d" % (path, schema["maxLength"]))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append("%s: %r does not match %s" % (path, value, schema["pattern"]))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append("%s: %r is below %r" % (path, value, schema["minimum"]))
    return errors


def schema():
    with open(SCHEMA) as f:
        return json.load(f)


def assert_valid(doc):
    s = schema()
    errors = validate(doc, s, s)
    assert not errors, "\n".join(errors[:20])


def test_the_validator_refuses_what_the_schema_refuses():
    s = schema()
    table = {"table": "d.t", "hosts": [], "hosts_more": 0, "cached": True,
             "windows": {"fresh_for": 30, "stale_while_revalidate": 60, "stale_if_error": 3600},
             "newest_fetched": None, "age": None, "state": None, "answer": None,
             "backoff": None, "fetches": []}
    assert not validate(table, s["$defs"]["table"], s)
    assert validate(dict(table, state="rotten"), s["$defs"]["table"], s)
    assert validate(dict(table, extra=1), s["$defs"]["table"], s)
    assert validate({k: v for k, v in table.items() if k != "fetches"}, s["$defs"]["table"], s)
    assert validate(dict(table, newest_fetched="2026-01-01 00:00:00"), s["$defs"]["table"], s)
    assert validate(dict(table, fetches=[{}] * 21), s["$defs"]["table"], s)
    assert validate(dict(table, hosts_more=-1), s["$defs"]["table"], s)


# --------------------------------------------------------------- the browser

def chromium():
    exe = shutil.which("chromium")
    assert exe, "chromium is not installed (make deps installs Debian's chromium)"
    return exe


def browser_env(h):
    env = dict(os.environ)
    # Chromium keeps its profile and cache under HOME: the test's own.
    home = h.path("chromium-home")
    os.makedirs(home, exist_ok=True)
    env["HOME"] = home
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    return env


def browser_args(h):
    # --no-sandbox: the tests run as root, where Chromium's sandbox refuses
    # to start; the page is our own, from 127.0.0.1.
    return [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
            "--no-first-run", "--disable-extensions", "--disable-background-networking",
            "--user-data-dir=" + h.path("chromium-profile")]


def rendered_dom(h, path="/datos-status"):
    """The DOM Chromium builds from the page, as it serializes it."""
    out = subprocess.run(browser_args(h) + ["--dump-dom", h.url(path)],
                         capture_output=True, timeout=120, env=browser_env(h))
    assert out.returncode == 0, out.stderr.decode("utf-8", "replace")[-2000:]
    dom = out.stdout.decode("utf-8")
    assert "<h1>datos status</h1>" in dom, dom[:2000]
    return dom


class Page(html.parser.HTMLParser):
    """What a person reads: the attention lines, the fetch history rows
    (their cells' text) and every element's tag, from a serialized DOM."""

    def __init__(self, dom):
        super().__init__()
        self.attention, self.fetches, self.tags = [], [], []
        self.scripts, self.external = 0, []
        self._li = self._tr = self._td = None
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "script":
            self.scripts += 1
        for k in ("src", "href"):
            if a.get(k) and re.match(r"^(https?:)?//", a[k]):
                self.external.append(a[k])
        if tag == "li" and "attention" in (a.get("class") or ""):
            self._li = [a.get("data-what"), ""]
        if tag == "tr" and a.get("class") == "fetch":
            self._tr = []
        if tag == "td" and self._tr is not None:
            self._td = ""

    def handle_endtag(self, tag):
        if tag == "li" and self._li:
            self.attention.append(tuple(self._li))
            self._li = None
        if tag == "td" and self._tr is not None and self._td is not None:
            self._tr.append(self._td.strip())
            self._td = None
        if tag == "tr" and self._tr is not None:
            self.fetches.append(self._tr)
            self._tr = None

    def handle_data(self, data):
        if self._li:
            self._li[1] += data
        if self._td is not None:
            self._td += data


# ------------------------------------------------------------------ servers

@pytest.fixture(scope="module")
def healthy(emulator):
    """A cached server with a healthy BigQuery, a short freshness (so that a
    refresh can be asked for) and the loader's textfile configured."""
    seed(emulator, contract_rows(emulator.now()))
    h = Httpd("datos-status")
    loader_file = h.path("loader.prom")
    h.write_config(datos_conf(emulator, fresh_for="1s", extra=(
        "DatosStaleWhileRevalidate 1h\nDatosLoaderMetricsFile \"%s\"\n"
        "DatosLoaderInterval 5m\n" % loader_file)) + STATUS)
    h.start()
    register_server(h)
    ready(h)
    yield h, loader_file
    unregister_server(h)
    h.stop()


def status_json(h, query="?json"):
    r = get(h, "/datos-status" + query)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["Cache-Control"] == "no-store"
    doc = r.json()
    assert_valid(doc)
    return doc


def test_the_page_is_one_document_without_scripts_or_outside_assets(healthy):
    h, _ = healthy
    r = get(h, "/datos-status")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    page = Page(r.text)
    assert page.scripts == 0 and not page.external
    assert "latam_dataset.datos" in r.text
    # the refresh is a plain link to the page itself
    assert re.search(r'<a id="refresh" href="\?">Refresh</a>', r.text)
    assert "http-equiv" not in r.text


def test_json_matches_the_schema_and_shows_the_answer(healthy):
    h, _ = healthy
    doc = status_json(h)
    (t,) = doc["tables"]
    assert t["table"] == "latam_dataset.datos"
    assert t["cached"] is True
    assert t["windows"] == {"fresh_for": 1, "stale_while_revalidate": 3600,
                            "stale_if_error": 3600}
    assert t["fetches"], "the warm start's fetch is in the history"
    first = t["fetches"][-1]
    assert first["outcome"] == "ok"
    # the contract table's 50 ids, one row each
    assert first["pages"] >= 1 and first["rows"] == 50
    # the emulator bills at least 10 MiB per query, and says so
    assert first["bytes_billed"] >= 10 * 1024 * 1024
    assert first["bytes_processed"] > 0
    assert doc["shared_tier"]["provider"] == "shmcb"
    # any process may serve the page: the one that answered may not hold
    # the answer yet, but the host does
    assert t["newest_fetched"] is not None
    r = get(h, "/datos", headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200
    doc = status_json(h)
    answers = [x["answer"] for x in doc["tables"] if x["answer"]]
    for a in answers:
        assert a["rows"] == 50 and a["etag"] == r.headers["ETag"]


def test_unknown_parameters_are_ignored(healthy):
    h, _ = healthy
    for q in ("?json&limit=zzz&%zz", "?x=1&json=1", "?json=&json"):
        status_json(h, q)
    for q in ("?limit=5", "?jsonx", "?js%6Fnx", "?" + "a" * 3000):
        r = get(h, "/datos-status" + q)
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/html"), q


def test_the_page_never_asks_bigquery(healthy, emulator):
    h, _ = healthy
    before = {e: emulator.count(e) for e in BIGQUERY}
    for i in range(10):
        assert get(h, "/datos-status").status_code == 200
        assert get(h, "/datos-status?json").status_code == 200
    assert {e: emulator.count(e) for e in BIGQUERY} == before


def test_other_methods_are_refused(healthy):
    h, _ = healthy
    r = requests.post(h.url("/datos-status"), data="x", timeout=30)
    assert r.status_code == 405
    assert "GET" in r.headers["Allow"]
    r = requests.head(h.url("/datos-status"), timeout=30)
    assert r.status_code == 200 and not r.content


def test_the_loader_run_is_shown_from_its_textfile(healthy, emulator):
    """The real loader writes its textfile; the page reads the last run, its
    outcome and its age, and asks for attention when the runs stop."""
    h, loader_file = healthy
    doc = status_json(h)
    assert doc["loader"]["error"]
    assert [a["what"] for a in doc["attention"]] == ["loader_unreadable"]

    make_pipeline(emulator)
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(emulator.now() - 60))
    emulator.publish(PIPELINE["topic"], [
        json.dumps({"id": "st%02d" % i, "timestamp": ts}) for i in range(7)])
    loader = Loader(emulator, "datos-status")
    r = loader.run()
    assert r.rc == 0, r
    shutil.copy(loader.metrics_file, loader_file)
    doc = status_json(h)
    lo = doc["loader"]
    assert lo["error"] is None and lo["outcome"] == "succeeded"
    assert lo["last_run"] is not None and lo["interval"] == 300
    assert lo["rows_loaded"] is not None
    # the backlog the run saw and its load jobs today, as the loader wrote them
    assert lo["backlog"] == r.finished["messages_pulled"] == 7
    assert lo["load_jobs_today"] == 1 and lo["load_jobs_quota"] == 1500
    assert "loader_late" not in [a["what"] for a in doc["attention"]]
    assert "quota_near" not in [a["what"] for a in doc["attention"]]

    # The same file with 1,300 load jobs used today: near the quota.
    with open(loader.metrics_file) as f:
        text = f.read()
    with open(loader_file, "w") as f:
        f.write(re.sub(r"^datos_loader_load_jobs_today \S+$", "datos_loader_load_jobs_today 1300",
                       text, flags=re.M))
    doc = status_json(h)
    near = [a for a in doc["attention"] if a["what"] == "quota_near"]
    assert len(near) == 1 and "1300 of the 1500" in near[0]["message"]

    # The same file, its last run moved 4 intervals back.
    with open(loader.metrics_file) as f:
        text = f.read()
    ran = float(re.search(r"^datos_loader_last_run_timestamp_seconds (\S+)$", text, re.M).group(1))
    text = text.replace("%.3f" % ran, "%.3f" % (ran - 4 * 300))
    with open(loader_file, "w") as f:
        f.write(text)
    doc = status_json(h)
    late = [a for a in doc["attention"] if a["what"] == "loader_late"]
    assert len(late) == 1 and "3 intervals" in late[0]["message"]
    os.unlink(loader_file)


def test_the_browser_shows_the_fetch_history_after_a_refresh(healthy, emulator):
    h, _ = healthy
    page = Page(rendered_dom(h))
    assert page.scripts == 0
    before = len(page.fetches)
    assert before >= 1
    assert all(row[-1] == "ok" for row in page.fetches)
    # The answer turns stale after DatosFreshFor (1s); a request then asks
    # the refresher for a newer one, served stale meanwhile.
    asked = queries(emulator)

    def refreshed():
        get(h, "/datos")
        return queries(emulator) > asked
    assert wait_for(refreshed)
    assert wait_for(lambda: len(status_json(h)["tables"][0]["fetches"]) > before)
    page = Page(rendered_dom(h))
    assert len(page.fetches) > before
    newest = page.fetches[0]
    # When, ago, took, pages, rows, processed, billed, outcome
    assert len(newest) == 8 and newest[-1] == "ok"
    assert re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$", newest[0])
    assert newest[6].endswith("MiB")


# ------------------------------------------------------- a failing backend

@pytest.fixture
def failing(emulator, httpd_factory):
    """A server whose BigQuery fails from its first fetch on."""
    emulator.clear_faults()
    emulator.add_fault(endpoint="bigquery.jobs.query", count=0, action="status", status=500,
                       reason="backendError")
    h = httpd_factory("datos-status-failing")
    h.write_config(datos_conf(emulator, fresh_for="30s", state_dir=False) + STATUS)
    h.log.expect(r"DT0201.*backend_error")
    since = log_size(h)
    h.start()
    warmed(h, since)
    yield h
    emulator.clear_faults()


def test_a_failing_backend_is_the_first_thing_the_browser_shows(failing):
    h = failing
    doc = status_json(h)
    whats = [a["what"] for a in doc["attention"]]
    assert whats[:2] == ["no_answer", "bigquery_failing"], whats
    (t,) = doc["tables"]
    assert t["fetches"][0]["outcome"] == "backend_error"
    assert t["fetches"][0]["bytes_processed"] is None

    page = Page(rendered_dom(h))
    assert [w for w, _ in page.attention][:2] == ["no_answer", "bigquery_failing"]
    text = page.attention[1][1]
    assert "BigQuery" in text and "latam_dataset.datos" in text
    assert "backend_error" in text
    # the attention section comes before the tables
    dom = rendered_dom(h)
    assert dom.index('id="attention"') < dom.index('id="table-0"')
    assert page.fetches and page.fetches[0][-1] == "backend_error"


# ------------------------------------------------------ bounds, odd names

def test_many_fetches_and_odd_names_keep_the_page_bounded(emulator, httpd_factory):
    """An uncached server (a fetch per request) past the 20 kept, under a
    virtual host whose names need escaping: the page stays escaped and
    bounded."""
    seed(emulator, contract_rows(emulator.now()))
    h = httpd_factory("datos-status-many")
    odd = "x<b>&'\"" + "z" * 300
    h.write_config(datos_conf(emulator, fresh_for="0") + STATUS + """
<VirtualHost *:${port}>
  ServerName 127.0.0.1
</VirtualHost>
<VirtualHost *:${port}>
  ServerName %s.example
  DatosTable latam_dataset.datos_%s
</VirtualHost>
""" % (odd, "t" * 900))
    h.start()
    for i in range(25):
        assert get(h, "/datos").status_code == 200
    doc = status_json(h)
    (t,) = [x for x in doc["tables"] if x["table"] == "latam_dataset.datos"]
    assert len(t["fetches"]) == 20
    assert all(f["outcome"] == "ok" for f in t["fetches"])
    starts = [f["started"] for f in t["fetches"]]
    assert starts == sorted(starts, reverse=True)
    r = get(h, "/datos-status")
    assert len(r.content) < MAX_BYTES
    # the name is text, escaped: no element of its own
    assert "b" not in Page(r.text).tags
    assert "x&lt;b&gt;&amp;&#39;&quot;zzz" in r.text
    long_table = [x for x in doc["tables"] if x["table"].startswith("latam_dataset.datos_t")]
    assert long_table and long_table[0]["table"].endswith("...")
    assert len(long_table[0]["table"].encode()) <= 259
