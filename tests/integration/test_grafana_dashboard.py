"""The shipped Grafana dashboard (conf/grafana/datos.json): a dashboard
Grafana imports anywhere (its Prometheus is a variable, every panel reads
through it, the grid fits 24 columns), and every expression of its panels
and variables reads only series, labels and label values that the real
mod_datos (/metrics after GET, POST and a refresh) and the real datos-loader
(its textfile after two runs against the emulator) export; promtool parses
each expression, and Prometheus's evaluation (promtool's rule unit tests) of
each panel on those real numbers returns data. A metric renamed in the C
code, or a join that cannot match, breaks this test instead of emptying a
panel.

The PromQL reading is promql_refs.py, the one that guards the alert rules."""
import copy
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest
import requests
import yaml

import promql_refs
from datos_env import expected_answer, get, ready, row, wait_for
from harness.loader import PIPELINE, Loader, make_pipeline
from load import server_conf
from tools.httpd import REPO_ROOT, TEST_TMP, Httpd

DASHBOARD = os.path.join(REPO_ROOT, "conf", "grafana", "datos.json")
RULES = os.path.join(REPO_ROOT, "conf", "prometheus", "datos-rules.yml")

DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}

# Grafana's own variables, which may stand in a range or a duration.
GRAFANA_VARIABLES = {"__rate_interval", "__interval", "__range", "__range_s",
                     "__interval_ms"}

METRICS = """
<Location "/metrics">
  SetHandler datos-metrics
  Require local
</Location>
"""


def load_dashboard():
    with open(DASHBOARD, encoding="utf-8") as f:
        return json.load(f)


def query_panels(d):
    return [p for p in d["panels"] if p["type"] != "row"]


def expressions(d):
    """(where, expr) of every panel target."""
    return [("panel %d %r target %s" % (p["id"], p["title"], t["refId"]), t["expr"])
            for p in query_panels(d) for t in p["targets"]]


LABEL_VALUES = re.compile(r"^label_values\((.*),\s*(\w+)\)$", re.S)


def variables_of(d):
    """{name: the label whose values it lists} of the query variables."""
    out = {}
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            # the plain string form, which every Grafana reads as it is
            q = v["query"]
            assert isinstance(q, str), v["name"]
            m = LABEL_VALUES.match(q)
            assert m, "variable %s: only label_values(selector, label) is used: %r" % (
                v["name"], q)
            out[v["name"]] = m.group(2)
    return out


def substitute(expr):
    """The PromQL Prometheus receives: Grafana's variables filled in as a
    host's Grafana would (All is .*, the range 5m)."""
    expr = re.sub(r"\$(__rate_interval|__interval|__range)\b", "5m", expr)
    return promql_refs.VARIABLE.sub(".*", expr)


# --------------------------------------------------- the dashboard itself

def layout_problems(d):
    """What would keep dashboard d from importing anywhere or from drawing
    as meant."""
    out = []
    if d.get("schemaVersion", 0) < 36:
        out.append("schemaVersion %s is older than Grafana 9" % d.get("schemaVersion"))
    if not (d.get("uid") and d.get("title")):
        out.append("no uid or title")
    if "__inputs" in d:
        out.append("an import input: a variable picks the Prometheus")
    ds = [(v["name"], v.get("query")) for v in d["templating"]["list"]
          if v["type"] == "datasource"]
    if ds != [("DS_PROMETHEUS", "prometheus")]:
        out.append("the Prometheus is not the one variable DS_PROMETHEUS: %s" % ds)
    ids = [p.get("id") for p in d["panels"]]
    if len(ids) != len(set(ids)) or None in ids:
        out.append("panel ids repeat or are missing: %s" % ids)
    cells = {}
    for p in d["panels"]:
        title = p.get("title")
        g = p["gridPos"]
        if g["x"] < 0 or g["y"] < 0 or g["w"] < 1 or g["h"] < 1:
            out.append("%r: gridPos %s" % (title, g))
        if g["x"] + g["w"] > 24:
            out.append("%r is wider than the 24 columns" % title)
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    out.append("%r overlaps %r" % (title, cells[(x, y)]))
                cells[(x, y)] = title
        if p["type"] == "row":
            if not title or p.get("collapsed") or p.get("panels"):
                out.append("row %r: a section holds its panels below it, open" % title)
            continue
        if p.get("datasource") != DATASOURCE:
            out.append("%r reads %s, not the templated Prometheus" % (title, p.get("datasource")))
        if not p.get("targets"):
            out.append("%r has no query" % title)
        if len(p.get("description", "")) <= 40:
            out.append("%r tells the operator nothing" % title)
        refs = [t.get("refId") for t in p.get("targets", [])]
        if len(refs) != len(set(refs)):
            out.append("%r: refIds repeat" % title)
        for t in p.get("targets", []):
            if t.get("datasource") != DATASOURCE:
                out.append("%r %s reads %s" % (title, t.get("refId"), t.get("datasource")))
            if not t.get("expr", "").strip():
                out.append("%r %s has no expression" % (title, t.get("refId")))
    if sum(p["type"] == "row" for p in d["panels"]) < 5:
        out.append("fewer than 5 sections")
    if sorted(d["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"])) != \
            d["panels"]:
        out.append("the panels are not in reading order")
    for v in d["templating"]["list"]:
        if v["type"] == "query" and v.get("datasource") != DATASOURCE:
            out.append("variable %s reads %s" % (v["name"], v.get("datasource")))
    return out


def test_the_dashboard_imports_anywhere_and_fits_its_grid():
    assert layout_problems(load_dashboard()) == []


def panel(d, n):
    return query_panels(d)[n]


LAYOUT_BREAKS = {
    "a repeated id": lambda d: panel(d, 2).update(id=panel(d, 1)["id"]),
    "wider than 24": lambda d: panel(d, 1)["gridPos"].update(x=20, w=8),
    "an overlap": lambda d: panel(d, 2)["gridPos"].update(x=panel(d, 1)["gridPos"]["x"]),
    "a fixed data source": lambda d: panel(d, 3).update(
        datasource={"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}),
    "a target on another source": lambda d: panel(d, 3)["targets"][0].update(
        datasource={"type": "loki", "uid": "${DS_PROMETHEUS}"}),
    "no target": lambda d: panel(d, 4).update(targets=[]),
    "no datasource variable": lambda d: d["templating"].update(list=[
        v for v in d["templating"]["list"] if v["type"] != "datasource"]),
    "an import input": lambda d: d.update(__inputs=[{"name": "DS_PROMETHEUS"}]),
}


@pytest.mark.parametrize("what", sorted(LAYOUT_BREAKS))
def test_a_broken_layout_is_reported(what):
    d = load_dashboard()
    LAYOUT_BREAKS[what](d)
    assert layout_problems(d), what


def test_every_variable_a_panel_uses_is_defined():
    d = load_dashboard()
    defined = {v["name"] for v in d["templating"]["list"]} | GRAFANA_VARIABLES
    for where, expr in expressions(d):
        for name in promql_refs.variables_in(expr):
            assert name in defined, "%s uses $%s: %s" % (where, name, expr)
    # each query variable is used by a panel or by another variable
    used = set()
    for _, expr in expressions(d):
        used.update(promql_refs.variables_in(expr))
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            used.update(promql_refs.variables_in(v["definition"]))
    assert set(variables_of(d)) <= used


def test_the_panels_cover_the_operations_view():
    """What the operations view is for: each subject has a panel reading
    its series (see docs/operations.md)."""
    d = load_dashboard()
    names = set()
    for _, expr in expressions(d):
        names.update(s.name for s in promql_refs.parse(expr).selectors)
    for subject, series in {
        "request rate by outcome": "datos_http_requests_total",
        "latency": "datos_http_request_duration_seconds_bucket",
        "cache age": "datos_cache_age_seconds",
        "hit sources": "datos_cache_lookups_total",
        "refused cache entries": "datos_cache_entries_refused_total",
        "BigQuery fetches": "datos_backend_queries_total",
        "BigQuery bytes": "datos_backend_bytes_processed_total",
        "POST accepted and refused": "datos_ingest_requests_total",
        "loader rows": "datos_loader_rows_loaded_total",
        "dead letters": "datos_loader_messages_invalid_total",
        "loader run age": "datos_loader_last_run_timestamp_seconds",
        "loader backlog": "datos_loader_messages_pulled_total",
        "firing alerts": "ALERTS",
    }.items():
        assert series in names, "no panel shows %s (%s)" % (subject, series)


def test_promtool_parses_every_expression(workdir):
    """Each panel's and variable's PromQL, as Prometheus receives it, written
    as a recording rule: `promtool check rules` parses every one."""
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: `make deps` installs Debian's prometheus package"
    d = load_dashboard()
    exprs = [substitute(e) for _, e in expressions(d)]
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            exprs.append(substitute(LABEL_VALUES.match(v["definition"]).group(1)))
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": "dashboard:expr_%d" % i, "expr": e} for i, e in enumerate(exprs)]}]}
    path = os.path.join(workdir, "dashboard-rules.yml")
    with open(path, "w") as f:
        yaml.safe_dump(rules, f)
    p = subprocess.run([tool, "check", "rules", path], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS: %d rules found" % len(exprs) in p.stdout


# ------------------------------------------- what the real binaries export

def alert_series():
    """The ALERTS series Prometheus makes of the shipped rules: one per
    alert and state, with the rule's labels."""
    with open(RULES) as f:
        doc = yaml.safe_load(f)
    out = {"ALERTS": []}
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                for state in ("pending", "firing"):
                    out["ALERTS"].append(dict(rule.get("labels", {}), alertname=rule["alert"],
                                              alertstate=state))
    assert len(out["ALERTS"]) > 20
    return out


class Exported:
    """What the binaries exported: two snapshots of the loader's textfile
    (after a first and a second run) and of mod_datos's /metrics (after
    the warm start, and after GET, a refresh and POST), and the series of
    the later ones (with ALERTS of the shipped rules) as {name: [labels]}."""

    def __init__(self, loader_texts, module_texts):
        self.loader_texts = loader_texts
        self.module_texts = module_texts
        self.series = promql_refs.merge(promql_refs.exported_series(loader_texts[-1]),
                                        promql_refs.exported_series(module_texts[-1]),
                                        alert_series())


@pytest.fixture(scope="module")
def binaries(emulator):
    """The loader and mod_datos, once both have done what an operator's
    host does."""
    make_pipeline(emulator)
    now_us = int(emulator.now()) * 1_000_000
    rows = [row("g%02d" % i, now_us - 3_600_000_000 - i * 1_000_000) for i in range(12)]
    emulator.insert_rows([r.wire() for r in rows], "latam_dataset", "datos")

    # the loader: valid and invalid messages, two runs
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(emulator.now() - 60))
    emulator.publish(PIPELINE["topic"], [
        {"data": json.dumps({"id": "dash-%d" % i, "contenido": "x", "timestamp": ts})}
        for i in range(3)] + [{"data": "not json"}])
    loader = Loader(emulator, "grafana-dashboard")
    loader_texts = []
    for run in range(2):
        if run:
            emulator.publish(PIPELINE["topic"], [
                {"data": json.dumps({"id": "dash-late", "contenido": "x", "timestamp": ts})},
                {"data": json.dumps({"id": "dash-bad", "timestamp": "yesterday"})}])
        r = loader.run()
        assert r.rc == 0, r
        with open(loader.metrics_file) as f:
            loader_texts.append(f.read())
    assert "datos_loader_rows_loaded_total 3\n" in loader_texts[0]
    assert "datos_loader_rows_loaded_total 4\n" in loader_texts[1]

    # mod_datos: GET, a refresh, POST accepted and refused, then /metrics
    assert PIPELINE["topic"] == server_conf.TOPIC
    h = Httpd("grafana-dashboard")
    try:
        h.write_config(server_conf.server_conf(
            emulator, extra=METRICS + "DatosFreshFor 1s\nDatosStaleWhileRevalidate 1h\n"))
        h.start()
        ready(h)                                   # the warm start's fetch
        module_texts = [get(h, "/metrics").text]

        def fetches():
            text = get(h, "/metrics").text
            m = re.search(r'^datos_backend_queries_total\{outcome="ok"\} (\d+)$', text, re.M)
            return int(m.group(1))

        first = get(h, "/datos")
        assert first.status_code == 200
        # the rows the loader loaded are the newest, then the seeded ones
        got = first.json()["datos"]
        assert sorted(x["id"] for x in got[:4]) == ["dash-0", "dash-1", "dash-2", "dash-late"]
        assert got[4:6] == expected_answer(rows, 2)
        time.sleep(1.5)                            # past DatosFreshFor: stale, refreshed
        before = fetches()
        assert get(h, "/datos").status_code == 200
        assert wait_for(lambda: fetches() > before), "no refresh was counted"

        def post(body, **headers):
            return requests.post(h.url("/datos"), data=body, timeout=60, headers=dict(
                {"Content-Type": "application/json",
                 "Authorization": "Bearer " + server_conf.INGEST_TOKEN}, **headers))

        record = json.dumps({"id": "dash-post", "contenido": "x", "timestamp": ts})
        assert post(record).status_code == 202
        assert post('{"id": "no timestamp"}').status_code == 400
        h.log.expect(r"DT0404")
        emulator.add_fault(endpoint="pubsub.topics.publish", action="status", status=503,
                           count=1)
        assert post(record).status_code in (502, 503, 504)
        scraped = get(h, "/metrics")
        assert scraped.status_code == 200
        module_texts.append(scraped.text)
    finally:
        emulator.clear_faults()
        h.stop()
    bad = h.check_log()
    assert not bad, "unexpected httpd log lines:\n" + "\n".join(bad)

    got = Exported(loader_texts, module_texts)
    series = got.series
    codes = {ls.get("code") for ls in series["datos_ingest_requests_total"]}
    assert {"202", "400"} <= codes and codes & {"502", "503", "504"}, codes
    return got


@pytest.fixture
def exported(binaries):
    return binaries.series


def test_every_panel_reads_what_the_binaries_export(exported):
    d = load_dashboard()
    variables = variables_of(d)
    problems = []
    for where, expr in expressions(d):
        problems += ["%s: %s" % (where, p)
                     for p in promql_refs.check(expr, exported, variables)]
    assert problems == [], "\n".join(problems)


def test_every_variable_lists_an_exported_label(exported):
    d = load_dashboard()
    variables = variables_of(d)
    assert {"job", "instance", "table", "loader_job", "loader_instance"} <= set(variables)
    for v in d["templating"]["list"]:
        if v["type"] != "query":
            continue
        selector, label = LABEL_VALUES.match(v["definition"]).groups()
        assert v["query"] == v["definition"]
        assert promql_refs.check(selector, exported, variables) == [], v["name"]
        for s in promql_refs.parse(selector).selectors:
            assert label in promql_refs.TARGET_LABELS or \
                any(label in ls for ls in exported[s.name]), (v["name"], label)
        # the table variable offers the table the module serves
        if v["name"] == "table":
            tables = {ls["table"] for s in promql_refs.parse(selector).selectors
                      for ls in exported[s.name]}
            assert tables == {"latam_dataset.datos"}, tables


def samples(text, **target):
    """[(series selector, value)] of an exposition, with the labels a
    scrape adds."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$', line)
        assert m, line
        labels = re.findall(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"', m.group(2) or "")
        labels += sorted(target.items())
        out.append(("%s{%s}" % (m.group(1), ",".join('%s="%s"' % kv for kv in labels)),
                    float(m.group(3))))
    return out


def input_series(before, after):
    """promtool's input series: each value of the first snapshot at 0 s,
    the second's from 30 s on (a series new in the second starts there)."""
    first = dict(before)
    out = []
    for series, value in after:
        values = "%r+0x20" % value
        values = ("%r %s" % (first[series], values)) if series in first else "_ " + values
        out.append({"series": series, "values": values})
    return out


def panels_without_data(binaries, d, workdir):
    """The titles of the panels (and the variables) of dashboard d that
    Prometheus's own evaluation (promtool's rule unit tests) finds empty on
    the two snapshots, scraped as Prometheus would (a job and an instance
    label), with the shipped alert rules loaded."""
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: `make deps` installs Debian's prometheus package"
    module = dict(job="datos", instance="web-1:80")
    loader = dict(job="node", instance="batch-1:9100")
    series = input_series(samples(binaries.module_texts[0], **module),
                          samples(binaries.module_texts[1], **module)) + \
        input_series(samples(binaries.loader_texts[0], **loader),
                     samples(binaries.loader_texts[1], **loader))
    records, tests, titles = [], [], {}
    for p in query_panels(d):
        for t in p["targets"]:
            name = "dashboard:panel_%d_%s" % (p["id"], t["refId"])
            titles[name] = "%s (%s)" % (p["title"], t["refId"])
            records.append({"record": name, "expr": substitute(t["expr"])})
            tests.append({"expr": "absent(%s)" % name, "eval_time": "3m", "exp_samples": []})
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            selector = substitute(LABEL_VALUES.match(v["definition"]).group(1))
            titles[selector] = "variable " + v["name"]
            tests.append({"expr": "absent(%s)" % selector, "eval_time": "3m",
                          "exp_samples": []})
    rules = os.path.join(workdir, "dashboard.yml")
    unit = os.path.join(workdir, "dashboard.test.yml")
    with open(rules, "w") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}, f)
    with open(unit, "w") as f:
        yaml.safe_dump({"rule_files": [RULES, rules], "evaluation_interval": "30s",
                        "tests": [{"interval": "30s", "input_series": series,
                                   "promql_expr_test": tests}]}, f, width=1000)
    p = subprocess.run([tool, "test", "rules", unit], capture_output=True, text=True,
                       timeout=300)
    out = p.stdout + p.stderr
    empty = re.findall(r'expr: "absent\((.*?)\)", time', out)
    assert (p.returncode == 0) == (not empty), out[-4000:]
    return sorted(titles.get(e, e) for e in empty)


@pytest.fixture
def workdir():
    os.makedirs(TEST_TMP, exist_ok=True)
    path = tempfile.mkdtemp(prefix="grafana-", dir=TEST_TMP)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_every_panel_shows_data_from_the_binaries(binaries, workdir):
    """Each target returns at least one series, so no panel of a running
    host says "No data" for a join, a label or a window that cannot match.
    The second loader run dead-lettered a third of its messages, so
    DatosLoaderDeadLetteringMany fires and the alert table has a row."""
    d = load_dashboard()
    assert sum(len(p["targets"]) for p in query_panels(d)) > 35
    assert panels_without_data(binaries, d, workdir) == []


def test_a_panel_without_data_is_reported(binaries, workdir):
    """A join on a label the two sides do not share: every series and label
    exists, and the panel is empty all the same."""
    d = load_dashboard()
    p = query_panels(d)[3]
    p["targets"][0]["expr"] = (
        'sum by (instance) (rate(datos_http_requests_total{handler="datos"}[5m])) '
        'and on (instance) sum by (instance) (datos_loader_rows_loaded_total)')
    assert promql_refs.check(p["targets"][0]["expr"], binaries.series) == []
    assert panels_without_data(binaries, d, workdir) == ["%s (A)" % p["title"]]


# A dashboard broken the ways a rename in the C code or a typo would break
# it: each one is reported, against the same real series.
BROKEN = [
    ("a series nothing exports", "datos_http_requests_total", "datos_http_request_total",
     "nothing exports datos_http_request_total"),
    ("a label the series lacks", 'handler="datos"', 'hanlder="datos"',
     "has no label hanlder"),
    ("a value the label never takes", 'handler="datos"', 'handler="data"',
     "never takes handler='data'"),
    ("a value in an alternation", 'handler=~"datos|ingest"', 'handler=~"datos|ingress"',
     "never takes handler='ingress'"),
    ("a status no server sends", 'code=~"5.."', 'code=~"6.."', "matches no value of code"),
    ("a grouping label nothing has", "sum by (tier, result)", "sum by (tier, outcome)",
     "by (outcome), a label none of"),
    ("a loader series renamed", "datos_loader_rows_loaded_total",
     "datos_loader_rows_total", "nothing exports datos_loader_rows_total"),
    ("a variable on the wrong label", 'table=~"$table"', 'table=~"$instance"',
     "variable instance lists instance values, not table"),
    ("an undefined variable", 'table=~"$table"', 'table=~"$tabel"',
     "variable tabel is not defined"),
    ("an alert the rules do not have", 'alertname=~"Datos.+"', 'alertname=~"Dato"',
     "never takes alertname='Dato'"),
]


@pytest.mark.parametrize("what,good,bad,reported", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_expression_is_reported(exported, what, good, bad, reported):
    d = load_dashboard()
    variables = variables_of(d)
    broken = copy.deepcopy(d)
    changed = 0
    for p in query_panels(broken):
        for t in p["targets"]:
            if good in t["expr"] and not changed:
                t["expr"] = t["expr"].replace(good, bad)
                changed += 1
    assert changed, "no panel has %r any more: update BROKEN" % good
    problems = [p for _, e in expressions(broken)
                for p in promql_refs.check(e, exported, variables)]
    assert problems and all(reported in p for p in problems), (what, problems)


def test_the_check_reads_promql_as_prometheus_does():
    """promql_refs on a tiny exposition, without any binary: selectors in
    functions, aggregations both ways round, joins, and what it refuses."""
    series = promql_refs.exported_series(
        '# TYPE a_total counter\n'
        'a_total{tier="x",result="hit"} 1\n'
        'a_total{tier="y",result="miss"} 2\n'
        'b_seconds_bucket{le="0.1"} 1\nb_seconds_bucket{le="+Inf"} 2\n'
        'c{code="200"} 1\n')
    check = promql_refs.check
    assert check('sum by (tier) (rate(a_total{result=~"hit|miss"}[5m]))', series) == []
    assert check('sum(rate(a_total[5m])) by (tier) / on (instance) group_left '
                 'sum by (instance) (rate(c[5m]))', series) == []
    assert check('histogram_quantile(0.9, sum by (le) (rate(b_seconds_bucket[5m])))',
                 series) == []
    assert check('c{code=~"5.."}', series) == []          # a status not seen yet
    assert check('a_total{tier=~"$t"}', series, {"t": "tier"}) == []
    assert check('a_total', series) == []
    for bad in ['rate(nope_total[5m])', 'a_total{tierr="x"}', 'a_total{tier="z"}',
                'a_total{tier!="z"}', 'a_total{tier=~"x|z"}', 'a_total{tier=~"q.*"}',
                'sum by (reason) (a_total)', 'sum(a_total) without (reason)',
                'c{code=~"7.."}', 'c{code="299x"}', 'a_total{tier="$t"}',
                'a_total{tier=~"$t"}', 'a_total{tier=~"$u"}', 'label_replace(a_total, '
                '"d", "$1", "tier", "(.*)")', 'nofunc(a_total)', 'vector(1)',
                'sum by ($t) (a_total)']:
        assert check(bad, series, {"u": "instance"}), bad
