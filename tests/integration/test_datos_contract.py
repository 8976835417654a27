"""The HTTP contract of /health and /datos (docs/design.md section 4), served by
the real httpd with mod_datos against the emulator."""
import pytest
import requests

from tools.httpd import Httpd, register_server, unregister_server
from datos_env import LOCATION, SHAPES, cold, contract_rows, datos_conf, expected_answer, get, ready, seed


@pytest.fixture(scope="module", params=SHAPES)
def server(request, emulator):
    shape = request.param
    rows = contract_rows(emulator.now())
    seed(emulator, rows, shape=shape)
    h = Httpd("datos-contract-" + shape)
    h.write_config(datos_conf(emulator))
    h.start()
    register_server(h)
    ready(h)
    yield h, Expected(rows, shape)
    unregister_server(h)
    h.stop()


class Expected(list):
    """The seeded rows, and the table shape the oracle must judge them by."""

    def __init__(self, rows, shape):
        super().__init__(rows)
        self.shape = shape


def expected(rows, limit):
    return expected_answer(rows, limit, rows.shape)


def assert_json_error(r, status):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["Cache-Control"] == "no-store"
    body = r.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == status
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body


# ---------------------------------------------------------------- /health

def test_health_is_exactly_ok_and_never_calls_google(server, emulator):
    h, _ = server
    before = emulator.counters()
    r = get(h, "/health")
    assert r.status_code == 200
    assert r.content == b'{"status":"ok"}'
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["Content-Length"] == "15"
    assert emulator.counters() == before


def test_health_head_has_headers_and_no_body(server):
    h, _ = server
    r = requests.head(h.url("/health"), timeout=120)
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["Content-Length"] == "15"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_health_other_methods_are_405(server, method):
    h, _ = server
    r = requests.request(method, h.url("/health"), timeout=120)
    assert_json_error(r, 405)
    assert r.headers["Allow"] == "GET, HEAD"


# ---------------------------------------------------------------- /datos rows

def test_default_answer_is_the_newest_ten_rows(server):
    h, rows = server
    r = get(h, "/datos")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"datos": expected(rows, 10)}


@pytest.mark.parametrize("limit", [1, 5, 47, 99, 100])
def test_limit_selects_that_many_newest_rows(server, limit):
    h, rows = server
    r = get(h, "/datos?limit=%d" % limit)
    assert r.status_code == 200
    body = r.json()
    assert body == {"datos": expected(rows, limit)}
    distinct_ids = len({row["id"] for row in rows})
    assert len(body["datos"]) == min(limit, distinct_ids)


def test_one_row_per_id_with_the_newest_version(server):
    h, rows = server
    got = get(h, "/datos?limit=100").json()["datos"]
    ids = [row["id"] for row in got]
    assert len(ids) == len(set(ids))
    by_id = {row["id"]: row for row in got}
    assert by_id["id-007"]["contenido"] == "new 7"
    if rows.shape == "three-columns":
        # No publish_time or message_id: equal timestamps fall to contenido.
        assert by_id["dup-pt"]["contenido"] == "late publish"
        assert by_id["dup-mid"]["contenido"] == "mid b"
        assert by_id["dup-null"]["contenido"] == "no publish time"
    else:
        assert by_id["dup-pt"]["contenido"] == "late publish"
        assert by_id["dup-mid"]["contenido"] == "mid b"
        assert by_id["dup-null"]["contenido"] == "has publish time"


def test_ordering_newest_first_ties_by_id_in_byte_order(server):
    h, rows = server
    got = get(h, "/datos?limit=100").json()["datos"]
    keys = [(row["timestamp"], row["id"]) for row in got]
    tied = [row["id"] for row in got if (row["contenido"] or "").startswith("tie ")]
    assert tied == sorted(tied, key=lambda s: s.encode("utf-8"))
    assert tied == ["Tie-C", "tie-a", "tie-b", "tie-\u00e1"]
    stamps = [k[0] for k in keys]
    assert stamps == sorted(stamps, reverse=True)


def test_rendering_of_timestamps_null_and_escapes(server):
    h, _ = server
    raw = get(h, "/datos?limit=100")
    got = {row["id"]: row for row in raw.json()["datos"]}
    assert got["whole-second"]["timestamp"].endswith(":00+00:00") or "." not in got["whole-second"]["timestamp"]
    assert "." not in got["whole-second"]["timestamp"]
    assert got["id-000"]["timestamp"].endswith(".876544+00:00")
    assert got["null-contenido"]["contenido"] is None
    assert '"contenido":null' in raw.text
    assert got["escapes"]["contenido"] == 'quote " backslash \\ newline \n tab \t \u2603'
    assert got["whole-second"]["contenido"] == "Prueba automática"
    # Non-ASCII is sent as UTF-8, not as \u escapes.
    assert "Prueba automática".encode("utf-8") in raw.content
    assert list(got["id-000"]) == ["id", "contenido", "timestamp"]


@pytest.mark.parametrize("query", [
    "limit=0", "limit=101", "limit=-1", "limit=abc", "limit=", "limit", "limit=1.5",
    "limit=1e2", "limit=%205", "limit=99999999999999999999", "limit=5&limit=6",
    "foo=bar", "limit=5&x=1", "LIMIT=5",
])
def test_bad_query_strings_are_400_json(server, query):
    h, _ = server
    body = assert_json_error(get(h, "/datos?" + query), 400)
    assert "limit" in body["error"]["message"] or "parameter" in body["error"]["message"]


def test_head_datos_matches_get_headers_without_body(server):
    h, _ = server
    g = get(h, "/datos?limit=3")
    r = requests.head(h.url("/datos?limit=3"), timeout=120)
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["Content-Length"] == str(len(g.content))
    assert r.headers["ETag"] == g.headers["ETag"]
    assert r.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405_with_allow(server, method, emulator):
    h, _ = server
    before = emulator.count("bigquery.jobs.query")
    r = requests.request(method, h.url("/datos"), data=b'{"id":"x"}', timeout=120)
    assert_json_error(r, 405)
    assert r.headers["Allow"] == "GET, HEAD"
    assert emulator.count("bigquery.jobs.query") == before


@pytest.mark.parametrize("path", ["/datos", "/datos?limit=3", "/health"])
def test_options_names_the_allowed_methods_without_a_body(server, path, emulator):
    """datos.conf exempts OPTIONS from the login with GET and HEAD: it is answered, not
    refused, and asks nothing of BigQuery."""
    h, _ = server
    before = emulator.count("bigquery.jobs.query")
    r = requests.options(h.url(path), timeout=5)
    assert r.status_code == 204, r.text
    assert r.headers["Allow"] == "GET, HEAD"
    assert r.content == b"" and "Content-Type" not in r.headers
    assert emulator.count("bigquery.jobs.query") == before


def test_strong_etag_and_if_none_match(server):
    h, _ = server
    r = get(h, "/datos?limit=4")
    etag = r.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert get(h, "/datos?limit=5").headers["ETag"] != etag
    r304 = get(h, "/datos?limit=4", headers={"If-None-Match": etag})
    assert r304.status_code == 304
    assert r304.content == b""
    assert r304.headers["ETag"] == etag
    assert get(h, "/datos?limit=4", headers={"If-None-Match": '"other", W/' + etag}).status_code == 304
    assert get(h, "/datos?limit=4", headers={"If-None-Match": '"other"'}).status_code == 200


# ---------------------------------------------------------------- what reaches BigQuery

def test_a_cold_fetch_queries_bigquery_with_the_documented_shape(server, emulator):
    h, rows = server
    emulator.clear_counters()
    cold(h)                     # the warm start fetches at once
    ready(h)
    assert get(h, "/datos").status_code == 200
    assert get(h, "/datos?limit=2").status_code == 200
    queries = emulator.requests("bigquery.jobs.query")
    # One fetch for both requests (the second is a slice of the first's
    # answer). The table holds fewer rows than the largest limit, so the
    # fetch widens 7d -> 56d -> 448d -> all.
    assert len(queries) == 4
    windows = []
    for q in queries:
        body = q["body"]
        assert q["path"] == "/bigquery/v2/projects/datos-local/queries"
        assert body["useLegacySql"] is False
        assert body["parameterMode"] == "NAMED"
        assert body["formatOptions"] == {"useInt64Timestamp": True}
        assert body["location"] == LOCATION
        assert "maximumBytesBilled" not in body
        assert "`datos-local.latam_dataset.datos`" in body["query"]
        params = {p["name"]: p for p in body["queryParameters"]}
        assert params["max_rows"]["parameterValue"]["value"] == "100"
        lookback = params.get("lookback_days")
        windows.append(int(lookback["parameterValue"]["value"]) if lookback else None)
        tie = "publish_time DESC, message_id DESC" if rows.shape == "loader-table" else "contenido DESC"
        assert "ORDER BY timestamp DESC, %s) = 1" % tie in body["query"]
    assert windows == [7, 56, 448, None]


def test_location_is_read_once_per_process_not_per_request(server, emulator):
    h, _ = server
    before = emulator.count("bigquery.tables.get")
    for _ in range(20):
        assert get(h, "/datos?limit=1").status_code == 200
    # At most one tables.get per httpd child (ServerLimit 4), whatever the
    # number of requests; the queries above carried the location it found.
    assert emulator.count("bigquery.tables.get") - before <= 4
