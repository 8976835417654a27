"""The Standard SQL subset run on SQLite, and invalidQuery for everything else."""
import pytest

P = "datos-local"
T = "`datos-local.latam_dataset.datos`"


@pytest.fixture
def rows(datos):
    datos.insert_rows([
        {"id": "a", "contenido": "x", "timestamp": "2024-01-14T10:00:00Z", "message_id": "m1"},
        {"id": "b", "contenido": None, "timestamp": "2024-01-14T12:00:00Z", "message_id": "m2",
         "publish_time": "2024-01-14T12:00:05Z"},
        {"id": "c", "contenido": "zz", "timestamp": "2024-01-15T09:30:00Z"},
        {"id": "a", "contenido": "y", "timestamp": "2024-01-16T00:00:00Z", "message_id": "m3"},
    ])
    return datos


def run(api, sql, params=None, **extra):
    r = api.query(sql, params, **extra)
    assert r.status_code == 200, r.text
    body = r.json()
    return [[c["v"] for c in row["f"]] for row in body.get("rows", [])], body


def bad(api, sql, params=None, code=400, reason="invalidQuery", **extra):
    r = api.query(sql, params, **extra)
    assert r.status_code == code, r.text
    err = r.json()["error"]
    assert err["errors"][0]["reason"] == reason, err
    return err["message"]


@pytest.mark.parametrize("sql,expected", [
    ("SELECT id FROM %s ORDER BY id, timestamp" % T, [["a"], ["a"], ["b"], ["c"]]),
    ("SELECT id AS k, contenido c FROM %s WHERE id = 'a' ORDER BY k, c DESC" % T,
     [["a", "y"], ["a", "x"]]),
    ("SELECT t.id FROM %s AS t WHERE t.contenido IS NULL" % T, [["b"]]),
    ("SELECT id FROM %s WHERE contenido IS NOT NULL AND NOT id = 'c' ORDER BY 1" % T,
     [["a"], ["a"]]),
    ("SELECT id FROM %s WHERE id IN ('b', 'c') OR contenido = 'y' ORDER BY id DESC" % T,
     [["c"], ["b"], ["a"]]),
    ("SELECT id FROM %s WHERE id NOT IN ('a') ORDER BY id" % T, [["b"], ["c"]]),
    ("SELECT id FROM %s WHERE timestamp BETWEEN '2024-01-14 11:00:00' AND "
     "TIMESTAMP '2024-01-15 10:00:00' ORDER BY id" % T, [["b"], ["c"]]),
    ("SELECT COUNT(*), COUNT(contenido), MIN(id), MAX(timestamp) FROM %s" % T,
     [["4", "3", "a", "1.7053632E9"]]),
    ("SELECT id, COUNT(*) AS n FROM %s GROUP BY id ORDER BY n DESC, id" % T,
     [["a", "2"], ["b", "1"], ["c", "1"]]),
    ("SELECT id FROM %s GROUP BY id HAVING COUNT(*) > 1" % T, [["a"]]),
    # NULLs first on ASC, last on DESC (BigQuery)
    ("SELECT contenido FROM %s ORDER BY contenido" % T, [[None], ["x"], ["y"], ["zz"]]),
    ("SELECT contenido FROM %s ORDER BY contenido DESC" % T, [["zz"], ["y"], ["x"], [None]]),
    ("SELECT contenido FROM %s ORDER BY contenido ASC NULLS LAST" % T,
     [["x"], ["y"], ["zz"], [None]]),
    ("SELECT id FROM %s ORDER BY timestamp DESC LIMIT 2 OFFSET 1" % T, [["c"], ["b"]]),
    ("SELECT id, rn FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY id ORDER BY timestamp) AS rn "
     "FROM %s) WHERE rn = 2" % T, [["a", "2"]]),
    ("SELECT id, contenido FROM %s WHERE TRUE QUALIFY ROW_NUMBER() OVER "
     "(PARTITION BY id ORDER BY timestamp DESC) = 1 ORDER BY id" % T,
     [["a", "y"], ["b", None], ["c", "zz"]]),
    ("SELECT id, ROW_NUMBER() OVER (ORDER BY timestamp DESC) AS rn FROM %s WHERE TRUE "
     "QUALIFY rn <= 2 ORDER BY rn" % T, [["a", "1"], ["c", "2"]]),
    ("SELECT TIMESTAMP_TRUNC(timestamp, DAY) AS d, COUNT(*) FROM %s GROUP BY d ORDER BY d" % T,
     [["1.7051904E9", "2"], ["1.7052768E9", "1"], ["1.7053632E9", "1"]]),
    ("SELECT id FROM %s WHERE TIMESTAMP_ADD(timestamp, INTERVAL 15 HOUR) >= "
     "TIMESTAMP '2024-01-16 00:00:00' ORDER BY id" % T, [["a"], ["c"]]),
    ("SELECT UNIX_MICROS(timestamp) FROM %s WHERE id = 'c'" % T, [["1705311000000000"]]),
    ("SELECT id FROM %s WHERE contenido LIKE 'z%%'" % T, [["c"]]),
    ("SELECT DISTINCT id FROM %s ORDER BY id" % T, [["a"], ["b"], ["c"]]),
    ("SELECT 1 + 2 AS three, 'x' AS s, TRUE AS t, NULL AS n", [["3", "x", "true", None]]),
    ("SELECT * FROM %s WHERE id = 'b'" % T,
     [["b", None, "1.7052336E9", "m2", "1.705233605E9"]]),
    ("SELECT id FROM `latam_dataset.datos` WHERE id = 'c'", [["c"]]),
    ("SELECT id FROM %s WHERE id = 'a' AND message_id > 'm1' -- trailing comment\n" % T, [["a"]]),
    ("select ID from %s where Id = 'c'" % T, [["c"]]),
])
def test_subset(api, rows, sql, expected):
    got, _ = run(api, sql)
    assert got == expected


def test_result_schema(api, rows):
    _, body = run(api, "SELECT id, COUNT(*), MIN(timestamp) AS first, MAX(publish_time) "
                       "FROM %s GROUP BY id ORDER BY id" % T)
    assert body["schema"]["fields"] == [
        {"name": "id", "type": "STRING", "mode": "NULLABLE"},
        {"name": "f0_", "type": "INTEGER", "mode": "NULLABLE"},
        {"name": "first", "type": "TIMESTAMP", "mode": "NULLABLE"},
        {"name": "f1_", "type": "TIMESTAMP", "mode": "NULLABLE"}]


def test_parameters(api, rows):
    got, _ = run(api, "SELECT id FROM %s WHERE id = @id AND timestamp > @t AND @flag" % T,
                 {"id": ("STRING", "a"), "t": ("TIMESTAMP", "2024-01-15T00:00:00Z"),
                  "flag": ("BOOL", "true")})
    assert got == [["a"]]
    got, _ = run(api, "SELECT @f * 2 AS f, @n AS n", {"f": ("FLOAT64", "1.25"),
                                                      "n": ("INT64", None)})
    assert got == [["2.5", None]]
    got, _ = run(api, "SELECT id FROM %s WHERE timestamp >= TIMESTAMP_SUB(@t, INTERVAL @d DAY) "
                      "ORDER BY id" % T,
                 {"t": ("TIMESTAMP", "2024-01-16 00:00:00.000000+00:00"), "d": ("INT64", 1)})
    assert got == [["a"], ["c"]]
    got, _ = run(api, "SELECT id FROM %s WHERE timestamp >= @s ORDER BY id" % T,
                 {"s": ("STRING", "2024-01-15 00:00:00")})  # STRING parameter coerced
    assert got == [["a"], ["c"]]


def test_string_order_is_byte_order(api, datos):
    ids = ["b", "B", "\u00e9", "e", "Z", "a\u0000", "\U0001F600", "\uffff", "10", "9"]
    datos.insert_rows([{"id": i, "timestamp": "2024-01-14T10:00:00Z"} for i in ids])
    got, _ = run(api, "SELECT id FROM %s ORDER BY id" % T)
    assert [g[0] for g in got] == sorted(ids, key=lambda s: s.encode("utf-8"))


@pytest.mark.parametrize("sql,needle", [
    ("SELECT colour FROM %s" % T, "Unrecognized name: colour at [1:8]"),
    ("FOO", 'Syntax error: Unexpected identifier "FOO" at [1:1]'),
    ("SELECT id FROM %s WHERE" % T, "Syntax error: Unexpected end of script"),
    ("SELECT id FROM %s LIMIT 'x'" % T, "Syntax error"),
    ("SELECT id FROM %s t JOIN %s u ON t.id = u.id" % (T, T), "JOIN"),
    ("WITH x AS (SELECT 1) SELECT * FROM x", "WITH"),
    ("SELECT id FROM %s UNION ALL SELECT id FROM %s" % (T, T), "UNION"),
    ("SELECT CONCAT(id, 'x') FROM %s" % T, "CONCAT"),
    ("SELECT NO_SUCH_FN(id) FROM %s" % T, "Function not found: no_such_fn"),
    ("SELECT id FROM %s WHERE id = 1" % T, "No matching signature for operator ="),
    ("SELECT id FROM %s WHERE contenido" % T, "WHERE clause should return type BOOL"),
    ("SELECT id, COUNT(*) FROM %s" % T, "neither grouped nor aggregated"),
    ("SELECT id FROM %s WHERE ROW_NUMBER() OVER () = 1" % T, "Analytic function not allowed"),
    ("SELECT id FROM %s QUALIFY ROW_NUMBER() OVER (PARTITION BY id) = 1" % T,
     "QUALIFY clause must be used in conjunction with WHERE"),
    ("SELECT id FROM %s WHERE timestamp > 'yesterday'" % T, 'Could not cast literal "yesterday"'),
    ("SELECT id, id FROM %s" % T, "Duplicate column names"),
    ("SELECT id FROM datos" , "must be qualified with a dataset"),
    ("SELECT id FROM %s WHERE @missing = 1" % T, "Query parameter 'missing' not found at [1:"),
])
def test_invalid_queries(api, rows, sql, needle):
    msg = bad(api, sql)
    assert needle in msg, msg


def test_error_positions(api, rows):
    msg = bad(api, "SELECT id\nFROM %s\nWHERE colour = 1" % T)
    assert msg == "Unrecognized name: colour at [3:7]"
    msg = bad(api, "SELECT id FROM %s WHERE id = @nope" % T)
    assert msg == "Query parameter 'nope' not found at [1:%d]" % (len("SELECT id FROM %s WHERE id = " % T) + 1)


def test_legacy_sql_refused(api, rows):
    r = api.post("/bigquery/v2/projects/%s/queries" % P, {"query": "SELECT 1"})  # default: legacy
    assert r.status_code == 400
    assert r.json()["error"]["errors"][0]["reason"] == "invalidQuery"
    assert "useLegacySql" in r.json()["error"]["message"]
    bad(api, "SELECT 1", useLegacySql=True)


def test_missing_table_and_dataset(api, rows):
    msg = bad(api, "SELECT id FROM `datos-local.latam_dataset.nope`", code=404, reason="notFound")
    assert msg == ("Not found: Table datos-local:latam_dataset.nope was not found in location "
                   "southamerica-east1")
    msg = bad(api, "SELECT id FROM `datos-local.nods.t`", code=404, reason="notFound")
    assert msg == "Not found: Dataset datos-local:nods was not found in location US"
    bad(api, "SELECT id FROM `other-project.latam_dataset.datos`", code=404, reason="notFound")


def test_parameter_errors(api, rows):
    bad(api, "SELECT @x", {"x": ("INT64", "abc")})
    bad(api, "SELECT @x", {"x": ("TIMESTAMP", "not a time")})
    r = api.post("/bigquery/v2/projects/%s/queries" % P,
                 {"query": "SELECT @x", "useLegacySql": False,
                  "queryParameters": [{"name": "x", "parameterType": {"type": "INT64"},
                                       "parameterValue": {"value": "1"}}]})
    assert r.status_code == 400  # parameterMode missing
    msg = bad(api, "SELECT id FROM %s LIMIT @n" % T, {"n": ("INT64", None)})
    assert "must not be null" in msg


def test_require_partition_filter(api, emu):
    emu.create_dataset("ds")
    api.post("/bigquery/v2/projects/%s/datasets/ds/tables" % P,
             {"tableReference": {"tableId": "t"},
              "schema": {"fields": [{"name": "ts", "type": "TIMESTAMP"}]},
              "timePartitioning": {"type": "DAY", "field": "ts"},
              "requirePartitionFilter": True})
    msg = bad(api, "SELECT ts FROM `datos-local.ds.t` WHERE TRUE")
    assert "without a filter over column(s) 'ts'" in msg
    run(api, "SELECT ts FROM `datos-local.ds.t` WHERE ts >= TIMESTAMP '2024-01-01'")


def test_translation_is_cached_and_tables_recreated(api, emu):
    emu.create_dataset("latam_dataset")
    emu.create_datos_table()
    emu.insert_rows([{"id": "a", "timestamp": "2024-01-14T10:00:00Z"}])
    q = "SELECT id FROM %s" % T
    assert run(api, q)[0] == [["a"]]
    assert run(api, q)[0] == [["a"]]
    emu.reset()
    emu.create_dataset("latam_dataset")
    emu.create_datos_table()
    assert run(api, q)[0] == []
