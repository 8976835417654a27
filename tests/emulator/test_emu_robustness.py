"""Bad input never yields a traceback, an HTML page or a 5xx: bounded, seeded mutations of
queries and request bodies, and garbage on the socket."""
import copy
import random
import socket

import pytest

from test_emu_query import PRODUCT_ALL, PRODUCT_LOOKBACK, PRODUCT_WATERMARK

P = "datos-local"
PARAMS = [{"name": "lookback_days", "parameterType": {"type": "INT64"},
           "parameterValue": {"value": "7"}},
          {"name": "max_rows", "parameterType": {"type": "INT64"},
           "parameterValue": {"value": "10"}},
          {"name": "watermark", "parameterType": {"type": "TIMESTAMP"},
           "parameterValue": {"value": "2024-01-01T00:00:00Z"}}]
TOKENS = ["SELECT", "FROM", "WHERE", "(", ")", ",", "*", "@lookback_days", "@max_rows",
          "@watermark", "@nope", "id", "timestamp", "QUALIFY", "ORDER BY", "LIMIT", "1", "'x'",
          "=", "AND", "OR", "NOT", "IS NULL", "OVER", "PARTITION BY", "ROW_NUMBER()",
          "COUNT(*)", "`datos-local.latam_dataset.datos`", "INTERVAL", "DAY", "TIMESTAMP",
          "GROUP BY", "HAVING", "DESC", "NULLS", "MIN(", ".", "`", "'", "\\", "--", "/*", "@",
          "@@x", "0x1F", "1e400", "99999999999999999999", "\u00e9", "\x00"]
VALUES = [None, True, False, 0, -1, 1.5, "", "x", "NaN", [], [1], {}, {"a": 1},
          "2024-01-14T14:00:00Z", 2 ** 70, "-5", {"type": "INT64"}, [{"x": None}]]


def assert_sane(r):
    assert r.status_code < 500 or r.status_code == 501, r.text[:500]
    assert r.headers["Content-Type"].startswith("application/json"), r.text[:200]
    body = r.json()
    if r.status_code >= 400:
        assert set(body["error"]) == {"code", "message", "errors", "status"}


def test_mutated_queries(api, datos):
    datos.insert_rows([{"id": "a", "timestamp": "2024-01-14T14:00:00Z", "contenido": "x"}])
    rng = random.Random(7)
    seeds = [PRODUCT_LOOKBACK, PRODUCT_ALL, PRODUCT_WATERMARK,
             "SELECT id, COUNT(*) FROM `datos-local.latam_dataset.datos` GROUP BY id "
             "HAVING COUNT(*) > 0 ORDER BY 2 DESC",
             "SELECT * FROM (SELECT id AS x, timestamp FROM `latam_dataset.datos`) WHERE x IN "
             "('a','b') AND timestamp BETWEEN '2024-01-01' AND CURRENT_TIMESTAMP()"]
    for _ in range(400):
        q = rng.choice(seeds).split()
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(q) + 1)
            op = rng.random()
            if op < 0.4 and q:
                del q[min(pos, len(q) - 1)]
            elif op < 0.8:
                q.insert(pos, rng.choice(TOKENS))
            elif q:
                q[min(pos, len(q) - 1)] = rng.choice(TOKENS)
        r = api.post("/projects/%s/queries" % P,
                     {"query": " ".join(q), "useLegacySql": False, "parameterMode": "NAMED",
                      "queryParameters": PARAMS})
        assert_sane(r)
        assert "could not run this query" not in r.text


def _mutate(rng, obj):
    if isinstance(obj, dict):
        if obj and rng.random() < 0.5:
            k = rng.choice(list(obj))
            if rng.random() < 0.3:
                del obj[k]
            else:
                obj[k] = _mutate(rng, obj[k]) if rng.random() < 0.6 else \
                    copy.deepcopy(rng.choice(VALUES))
        elif rng.random() < 0.2:
            obj[rng.choice(["kind", "x", "location", "type", "mode", "value"])] = \
                copy.deepcopy(rng.choice(VALUES))
        return obj
    if isinstance(obj, list):
        if obj and rng.random() < 0.7:
            i = rng.randrange(len(obj))
            obj[i] = _mutate(rng, obj[i]) if rng.random() < 0.7 else \
                copy.deepcopy(rng.choice(VALUES))
        return obj
    return copy.deepcopy(rng.choice(VALUES))


@pytest.mark.parametrize("seed", [11, 12])
def test_mutated_bodies(api, datos, seed):
    rng = random.Random(seed)
    base = "/bigquery/v2/projects/%s" % P
    templates = [
        ("/queries", {"query": "SELECT id FROM `latam_dataset.datos` WHERE timestamp >= @t "
                               "LIMIT @n", "useLegacySql": False, "parameterMode": "NAMED",
                      "queryParameters": [
                          {"name": "t", "parameterType": {"type": "TIMESTAMP"},
                           "parameterValue": {"value": "2024-01-01 00:00:00"}},
                          {"name": "n", "parameterType": {"type": "INT64"},
                           "parameterValue": {"value": "3"}}],
                      "maxResults": 2, "maximumBytesBilled": "100000000",
                      "formatOptions": {"useInt64Timestamp": True},
                      "location": "southamerica-east1",
                      "defaultDataset": {"datasetId": "latam_dataset"}}),
        ("/datasets/latam_dataset/tables/datos/insertAll",
         {"rows": [{"insertId": "1", "json": {"id": "a", "timestamp": "2024-01-14T14:00:00Z",
                                               "contenido": "c"}}], "skipInvalidRows": False}),
        ("/datasets/latam_dataset/tables",
         {"tableReference": {"tableId": "t"},
          "schema": {"fields": [{"name": "a", "type": "TIMESTAMP", "mode": "NULLABLE"},
                                {"name": "r", "type": "RECORD",
                                 "fields": [{"name": "x", "type": "STRING"}]}]},
          "timePartitioning": {"type": "DAY", "field": "a", "expirationMs": "1000"},
          "clustering": {"fields": ["a"]}}),
        ("/datasets", {"datasetReference": {"datasetId": "dsx"}, "location": "US",
                       "defaultTableExpirationMs": "3600000"}),
    ]
    for _ in range(300):
        path, body = rng.choice(templates)
        b = copy.deepcopy(body)
        for _ in range(rng.randint(1, 3)):
            b = _mutate(rng, b)
        assert_sane(api.post(base + path, b))


def test_garbage_on_the_socket(emu, api):
    for junk in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",   # a TLS hello
                 b"GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
                 b"POST /token HTTP/1.1\r\nContent-Length: 100\r\n\r\nshort",
                 b"NONSENSE\r\n\r\n"):
        s = socket.create_connection(("127.0.0.1", emu.port), timeout=5)
        try:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            try:
                s.recv(65536)
            except OSError:
                pass
        finally:
            s.close()
    assert api.get("/_emulator/health").json() == {"status": "ok"}
