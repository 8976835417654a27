"""The shipped Prometheus rules (conf/prometheus/datos-rules.yml): promtool
accepts them, their unit tests pass, and every series they watch is one that
the real mod_datos and the real datos-loader export, with the label values
the rules match on. A metric renamed in the C code breaks this test instead
of silently muting an alert."""
import json
import os
import re
import shutil
import subprocess
import time

import requests

from datos_env import get
from tools.httpd import REPO_ROOT
from harness.loader import PIPELINE, Loader, make_pipeline
from load import server_conf

RULES_DIR = os.path.join(REPO_ROOT, "conf", "prometheus")
RULES = os.path.join(RULES_DIR, "datos-rules.yml")
RULE_TESTS = os.path.join(RULES_DIR, "datos-rules.test.yml")

# metric{label="value"} or label=~"a|b" inside a selector
SELECTOR = re.compile(r'\b(datos_[a-z_]+)\s*(\{[^}]*\})?')
MATCHER = re.compile(r'([a-z_]+)\s*(=~|=|!=)\s*"([^"]*)"')


def promtool(*args):
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: `make deps` installs Debian's prometheus package"
    return subprocess.run([tool] + list(args), capture_output=True, text=True, timeout=120,
                          cwd=RULES_DIR)


def test_promtool_accepts_the_rules():
    p = promtool("check", "rules", RULES)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout


def test_each_alert_fires_on_its_case_and_not_on_a_healthy_host():
    p = promtool("test", "rules", RULE_TESTS)
    assert p.returncode == 0, p.stdout + p.stderr
    # every alert of the rules file is exercised by the unit tests
    with open(RULES) as f:
        alerts = set(re.findall(r"^\s*- alert: (\w+)", f.read(), re.M))
    with open(RULE_TESTS) as f:
        tested = set(re.findall(r"alertname: (\w+)", f.read()))
    assert alerts and alerts <= tested, alerts - tested


def rule_expressions():
    """The PromQL of every rule: `expr:` and its indented continuation."""
    exprs, cur, indent = [], None, 0
    with open(RULES) as f:
        for line in f:
            m = re.match(r"(\s*)expr:\s*(.*)", line)
            if m:
                cur, indent = [m.group(2)], len(m.group(1))
                exprs.append(cur)
            elif cur is not None and line.strip() and \
                    len(line) - len(line.lstrip()) > indent:
                cur.append(line.strip())
            else:
                cur = None
    return [" ".join(x) for x in exprs]


def exported_series(text):
    """{metric name: [ {label: value} ]} from Prometheus text format."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s', line)
        assert m, line
        labels = dict((k, v) for k, v in re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"',
                                                     m.group(3) or ""))
        out.setdefault(m.group(1), []).append(labels)
    return out


def test_every_series_the_rules_watch_is_exported(emulator, httpd_factory):
    # the loader: one valid and one invalid message, one run
    make_pipeline(emulator)
    now = emulator.now()
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60))
    emulator.publish(PIPELINE["topic"], [
        {"data": json.dumps({"id": "rules-1", "contenido": "x", "timestamp": ts})},
        {"data": "not json"}])
    loader = Loader(emulator, "prometheus-rules")
    r = loader.run()
    assert r.rc == 0, r
    with open(loader.metrics_file) as f:
        series = exported_series(f.read())

    # mod_datos: a read, a write and a scrape of /metrics
    assert PIPELINE["topic"] == server_conf.TOPIC
    h = httpd_factory("prometheus-rules")
    h.write_config(server_conf.server_conf(emulator, extra="""
<Location "/metrics">
  SetHandler datos-metrics
  Require local
</Location>
"""))
    h.start()
    assert get(h, "/datos").status_code == 200
    w = requests.post(h.url("/datos"), timeout=120,
                      data=json.dumps({"id": "rules-2", "timestamp": ts}),
                      headers={"Content-Type": "application/json",
                               "Authorization": "Bearer " + server_conf.INGEST_TOKEN})
    assert w.status_code == 202, w.text
    scraped = get(h, "/metrics")
    assert scraped.status_code == 200
    for name, labels in exported_series(scraped.text).items():
        series.setdefault(name, []).extend(labels)

    watched = SELECTOR.findall("\n".join(rule_expressions()))
    assert len(watched) > 15
    for name, selector in watched:
        assert name in series, "the rules watch %s, which nothing exports" % name
        for label, op, value in MATCHER.findall(selector or ""):
            have = {s.get(label) for s in series[name]}
            assert have != {None}, "%s has no label %s" % (name, label)
            if op == "=":
                assert value in have, (name, label, value, have)
            elif op == "=~":
                wanted = [v for v in value.split("|") if not any(c in v for c in ".*+[(")]
                for v in wanted:
                    assert v in have, "%s{%s=%r} is never exported (%s)" % (
                        name, label, v, sorted(x for x in have if x))
                pattern = re.compile(value)
                assert any(x is not None and pattern.fullmatch(x) for x in have) \
                    or label == "code", (name, label, value, have)


# Every series the rules watch, and each value their label matchers name,
# with the test that drives it up (or changes it) and checks the value:
# presence alone (above) would not notice a counter that never moves.
# "file::function", in tests/integration; the function must name the series.
SERIES = "test_alert_series.py::"
DRIVEN_BY = {
    ("datos_cache_age_seconds", ""):
        SERIES + "test_the_answer_ages_while_bigquery_fails",
    ("datos_http_requests_total", "handler=datos"):
        SERIES + "test_the_answer_ages_while_bigquery_fails",
    ("datos_http_requests_total", "code=~5.."):
        SERIES + "test_each_failed_fetch_is_counted_by_outcome",
    ("datos_backend_queries_total", "outcome=ok"):
        SERIES + "test_each_failed_fetch_is_counted_by_outcome",
    ("datos_backend_queries_total", "outcome!=ok"):
        SERIES + "test_each_failed_fetch_is_counted_by_outcome",
    ("datos_backend_queries_total", "outcome=auth"):
        SERIES + "test_each_failed_fetch_is_counted_by_outcome",
    ("datos_backend_queries_total", "outcome=quota"):
        SERIES + "test_each_failed_fetch_is_counted_by_outcome",
    ("datos_backend_queries_total", "outcome=rejected"):
        SERIES + "test_each_failed_fetch_is_counted_by_outcome",
    ("datos_backend_queries_total", "outcome=bytes_limit"):
        SERIES + "test_each_failed_fetch_is_counted_by_outcome",
    ("datos_backend_queries_total", "outcome=config"):
        SERIES + "test_a_table_that_cannot_hold_the_record_is_a_config_outcome",
    ("datos_backend_wait_rejected_total", ""):
        SERIES + "test_requests_over_the_waiting_bound_are_counted",
    ("datos_cache_store_failures_total", "tier=shared"):
        SERIES + "test_a_shared_tier_that_refuses_writes_is_counted",
    ("datos_cache_store_failures_total", "tier=state_dir"):
        SERIES + "test_a_state_dir_that_cannot_be_written_is_counted",
    ("datos_cache_entries_refused_total", ""):
        "test_datos_trust.py::test_forged_fleet_entries_are_never_served",
    ("datos_ingest_requests_total", ""):
        SERIES + "test_refused_publishes_are_counted_by_code",
    ("datos_ingest_requests_total", "code=~5.."):
        SERIES + "test_refused_publishes_are_counted_by_code",
    ("datos_ingest_publish_duration_seconds_bucket", ""):
        SERIES + "test_a_slow_publish_lands_in_the_slow_buckets",
    ("datos_loader_last_run_timestamp_seconds", ""):
        SERIES + "test_the_loader_textfile_follows_runs_quota_and_dead_letters",
    ("datos_loader_last_success_timestamp_seconds", ""):
        SERIES + "test_the_loader_textfile_follows_runs_quota_and_dead_letters",
    ("datos_loader_load_jobs_total", "outcome=quota_exceeded"):
        SERIES + "test_the_loader_textfile_follows_runs_quota_and_dead_letters",
    ("datos_loader_messages_invalid_total", ""):
        SERIES + "test_the_loader_textfile_follows_runs_quota_and_dead_letters",
    ("datos_loader_messages_pulled_total", ""):
        SERIES + "test_the_loader_textfile_follows_runs_quota_and_dead_letters",
}

# Values a rule names that a running module cannot produce, with the test
# showing where the case is stopped instead. A plain-http BigQuery URL is
# refused when the configuration is read (apache2 -t fails), so no fetch is
# ever counted as insecure_url; the rule keeps the class for completeness.
STOPPED_EARLIER = {
    ("datos_backend_queries_total", "outcome=insecure_url"):
        "test_datos_config.py::test_plain_http_to_a_remote_host_needs_the_explicit_opt_in",
}


def watched_keys():
    """(metric, matcher) for every selector of the rules; an alternation
    of plain values is one key per value."""
    keys = set()
    for name, selector in SELECTOR.findall("\n".join(rule_expressions())):
        matchers = MATCHER.findall(selector or "")
        if not matchers:
            keys.add((name, ""))
        for label, op, value in matchers:
            if op == "=~" and re.fullmatch(r"\w+(\|\w+)*", value):
                keys.update((name, "%s=%s" % (label, v)) for v in value.split("|"))
            else:
                keys.add((name, "%s%s%s" % (label, op, value)))
    return keys


def source_of_test(ref):
    """The source of a test function named "file::function"."""
    path, func = ref.split("::")
    with open(os.path.join(REPO_ROOT, "tests", "integration", path)) as f:
        text = f.read()
    m = re.search(r"^def %s\(.*?(?=^\S)" % re.escape(func), text + "\nEND", re.M | re.S)
    assert m, "%s names a test that does not exist" % ref
    return m.group(0)


def test_every_series_the_rules_watch_is_driven_by_a_test():
    watched = watched_keys()
    assert len(watched) > 15
    mapped = set(DRIVEN_BY) | set(STOPPED_EARLIER)
    assert watched - mapped == set(), "no test drives these series of the rules"
    assert mapped - watched == set(), "mapped, but no rule watches these any more"
    for (name, _), ref in DRIVEN_BY.items():
        assert name in source_of_test(ref), "%s does not look at %s" % (ref, name)
    for ref in STOPPED_EARLIER.values():
        source_of_test(ref)
