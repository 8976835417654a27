"""Cost bounds of the read path, counted at the emulator: the lookback
partition filter, widening in at most three steps, and maximumBytesBilled."""
import pytest

from tools.httpd import Httpd, register_server, unregister_server
from datos_env import cold, datos_conf, expected_answer, get, log_size, ready, row, seed, warmed

DAY_US = 86_400 * 1_000_000


@pytest.fixture(scope="module")
def server(emulator):
    seed(emulator, [])
    h = Httpd("datos-cost")
    h.write_config(datos_conf(emulator))
    h.start()
    register_server(h)
    ready(h)
    yield h
    unregister_server(h)
    h.stop()


def reconfigure(h, emulator, extra=""):
    """The configuration of the test, on a cold start: the warm start makes one
    fetch at once, whose queries the test counts (from here)."""
    h.write_config(datos_conf(emulator, extra=extra))
    emulator.clear_counters()
    since = log_size(h)
    cold(h)
    warmed(h, since)


def restore(h, emulator):
    """The suite's configuration again, over an empty table (so that the
    warm start finds nothing to warn about)."""
    seed(emulator, [])
    reconfigure(h, emulator)


def ids(prefix, n, ts_us, contenido="x"):
    return [row("%s-%03d" % (prefix, i), ts_us - i * 1_000_000, contenido=contenido) for i in range(n)]


def windows_asked(emulator):
    out = []
    for q in emulator.requests("bigquery.jobs.query"):
        params = {p["name"]: p["parameterValue"]["value"] for p in q["body"].get("queryParameters", [])}
        out.append(int(params["lookback_days"]) if "lookback_days" in params else None)
    return out


def now_us(emulator):
    return int(emulator.now()) * 1_000_000


def test_enough_recent_rows_take_one_query_within_the_lookback(server, emulator):
    n = now_us(emulator)
    rows = ids("recent", 120, n - DAY_US) + ids("old", 50, n - 30 * DAY_US)
    seed(emulator, rows)
    reconfigure(server, emulator)
    r = get(server, "/datos?limit=100")
    assert r.status_code == 200
    assert r.json()["datos"] == expected_answer(rows, 100)
    assert windows_asked(emulator) == [7]
    # The partition filter kept the 30-day-old partition out of the scan.
    q = emulator.requests("bigquery.jobs.query")[0]
    assert "TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL @lookback_days DAY)" in q["body"]["query"]


def test_too_few_rows_widen_in_three_steps_to_the_whole_table(server, emulator):
    n = now_us(emulator)
    rows = (ids("w7", 20, n - DAY_US) + ids("w56", 30, n - 30 * DAY_US)
            + ids("w448", 30, n - 200 * DAY_US) + ids("all", 30, n - 1000 * DAY_US))
    seed(emulator, rows)
    reconfigure(server, emulator)
    r = get(server, "/datos?limit=100")
    assert r.status_code == 200
    assert r.json()["datos"] == expected_answer(rows, 100)
    assert windows_asked(emulator) == [7, 56, 448, None]


def test_widening_stops_as_soon_as_enough_rows_are_found(server, emulator):
    n = now_us(emulator)
    rows = ids("w7", 20, n - DAY_US) + ids("w56", 90, n - 30 * DAY_US) + ids("ancient", 10, n - 900 * DAY_US)
    seed(emulator, rows)
    reconfigure(server, emulator)
    body = get(server, "/datos?limit=100").json()
    assert windows_asked(emulator) == [7, 56]
    assert body["datos"] == expected_answer(rows[:110], 100)
    assert not any(d["id"].startswith("ancient") for d in body["datos"])


def test_configured_lookback_is_the_first_window(server, emulator):
    n = now_us(emulator)
    rows = ids("recent", 5, n - DAY_US)
    seed(emulator, rows)
    reconfigure(server, emulator, "DatosLookback 2d\nDatosLimit 3 5\n")
    try:
        body = get(server, "/datos").json()
        assert body["datos"] == expected_answer(rows, 3)
        # Five rows in two days: enough for the largest limit (5).
        assert windows_asked(emulator) == [2]
        params = {p["name"]: p["parameterValue"]["value"]
                  for p in emulator.requests("bigquery.jobs.query")[0]["body"]["queryParameters"]}
        assert params == {"lookback_days": "2", "max_rows": "5"}
    finally:
        restore(server, emulator)


def test_widening_capped_by_max_bytes_billed_serves_rows_found(server, emulator):
    n = now_us(emulator)
    recent = ids("recent", 20, n - DAY_US)
    # 30 rows of 1 MiB a month ago: the 56-day window would bill ~31 MiB.
    heavy = ids("heavy", 30, n - 30 * DAY_US, contenido="h" * (1024 * 1024))
    seed(emulator, recent + heavy)
    server.log.expect(r"DT0101")
    reconfigure(server, emulator, "DatosMaxBytesBilled 20M\n")
    try:
        r = get(server, "/datos?limit=100")
        assert r.status_code == 200
        assert r.json()["datos"] == expected_answer(recent, 100)
        queries = emulator.requests("bigquery.jobs.query")
        assert [q["body"].get("maximumBytesBilled") for q in queries] == ["20971520", "20971520"]
        assert [q["status"] for q in queries] == [200, 400]
        assert windows_asked(emulator) == [7, 56]
    finally:
        restore(server, emulator)


def test_first_query_over_the_cap_is_a_503(server, emulator):
    n = now_us(emulator)
    heavy = ids("heavy", 12, n - DAY_US, contenido="h" * (1024 * 1024))
    seed(emulator, heavy)
    server.log.expect(r"DT0201.*bytes_limit")
    reconfigure(server, emulator, "DatosMaxBytesBilled 10M\n")
    try:
        r = get(server, "/datos")
        assert r.status_code == 503
        assert r.json()["error"]["code"] == 503
        assert r.headers["Cache-Control"] == "no-store"
        assert int(r.headers["Retry-After"]) > 0
    finally:
        restore(server, emulator)
