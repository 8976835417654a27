"""BigQuery state: datasets, tables (rows in one in-memory SQLite database), per-partition
byte statistics, query and load jobs, and the optional persistence of --data-dir.

Persistence: `bigquery.json` holds datasets, tables, rows, load jobs and the per-table daily
load-job counts, rewritten atomically after every change, so a load job's rows and its DONE
state land in one rename. Query jobs, created on every jobs.query, go to an append-only
journal (`bigquery-jobs.*`, see journal.py) instead of rewriting the rows each time."""
import calendar
import datetime
import hashlib
import json
import os
import sqlite3
import threading
from collections import OrderedDict

from . import bqtypes
from .errors import ApiError, invalid_query, not_found
from .journal import Journal, write_atomic

DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
NULL_PARTITION = "__NULL__"
MAX_JOBS = 10_000  # oldest query jobs (and their results) are forgotten past this
MAX_LOAD_JOBS = 100_000  # load jobs are small; ids must stay taken for a long time


def etag_of(*parts):
    return hashlib.md5("|".join(map(str, parts)).encode()).hexdigest()[:22] + "=="


class ColumnDef:
    __slots__ = ("name", "std", "repeated", "required", "fields")

    def __init__(self, name, std, repeated, required, fields):
        self.name, self.std, self.repeated, self.required, self.fields = \
            name, std, repeated, required, fields


def _sub_fields(fields):
    out = []
    for f in fields:
        std = bqtypes.standard_type(f["type"])
        out.append({"name": f["name"], "std": std, "repeated": f.get("mode") == "REPEATED",
                    "required": f.get("mode") == "REQUIRED",
                    "fields": _sub_fields(f["fields"]) if std == "STRUCT" else None})
    return out


class Dataset:
    def __init__(self, project, dataset_id, location, created_ms, extra):
        self.project = project
        self.dataset_id = dataset_id
        self.location = location
        self.created_ms = created_ms
        self.modified_ms = created_ms
        self.extra = extra

    def to_api(self, base_url):
        d = {"kind": "bigquery#dataset",
             "etag": etag_of(self.project, self.dataset_id, self.modified_ms),
             "id": "%s:%s" % (self.project, self.dataset_id),
             "selfLink": "%s/bigquery/v2/projects/%s/datasets/%s"
                         % (base_url, self.project, self.dataset_id),
             "datasetReference": {"datasetId": self.dataset_id, "projectId": self.project}}
        d.update(self.extra)
        d.update({"creationTime": str(self.created_ms), "lastModifiedTime": str(self.modified_ms),
                  "location": self.location, "type": "DEFAULT"})
        return d

    def dump(self):
        return {"project": self.project, "dataset_id": self.dataset_id,
                "location": self.location, "created_ms": self.created_ms,
                "modified_ms": self.modified_ms, "extra": self.extra}


class Table:
    def __init__(self, project, dataset_id, table_id, schema, time_partitioning, clustering,
                 require_partition_filter, created_ms, extra, seq):
        self.project = project
        self.dataset_id = dataset_id
        self.table_id = table_id
        self.key = (project, dataset_id, table_id)
        self.schema = schema  # normalized API fields list
        self.columns = [ColumnDef(f["name"], bqtypes.standard_type(f["type"]),
                                  f["mode"] == "REPEATED", f["mode"] == "REQUIRED",
                                  _sub_fields(f["fields"]) if f.get("fields") else None)
                        for f in schema]
        self.col_index = {c.name.lower(): i for i, c in enumerate(self.columns)}
        self.time_partitioning = time_partitioning
        self.clustering = clustering
        self.require_partition_filter = require_partition_filter
        self.created_ms = created_ms
        self.modified_ms = created_ms
        self.extra = extra
        self.seq = seq
        self.sqlite_name = "t_%d" % seq
        self.part_stats = {}  # partition key -> [rows, [bytes per column]]
        self.stream_batches = []  # [inserted_ms, rows, bytes] still in the streaming buffer
        self.total_rows = 0
        self.total_bytes = 0
        self.ins_times = []
        pf = (time_partitioning or {}).get("field")
        self._pidx = self.col_index.get(pf.lower()) if pf else None
        self._ptype = (time_partitioning or {}).get("type")

    def partition_field_lower(self):
        pf = (self.time_partitioning or {}).get("field")
        return pf.lower() if pf else None

    # partitions -----------------------------------------------------------------------------

    def partition_key(self, row, inserted_us):
        if not self.time_partitioning:
            return 0
        if self._pidx is None:
            us = inserted_us
        else:
            v = row[self._pidx]
            if v is None:
                return NULL_PARTITION
            if self.columns[self._pidx].std == "DATE":
                y, m, d = map(int, v.split("-"))
                us = (datetime.date(y, m, d) - datetime.date(1970, 1, 1)).days * DAY_US
            else:
                us = v
        t = self._ptype
        if t == "DAY":
            return us // DAY_US
        if t == "HOUR":
            return us // HOUR_US
        dt = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=us)
        if t == "MONTH":
            return dt.year * 12 + dt.month - 1
        return dt.year

    def partition_range(self, key):
        t = self._ptype
        if t == "DAY":
            return key * DAY_US, (key + 1) * DAY_US
        if t == "HOUR":
            return key * HOUR_US, (key + 1) * HOUR_US
        if t == "MONTH":
            y, m = divmod(key, 12)
            start = calendar.timegm((y, m + 1, 1, 0, 0, 0)) * 1_000_000
            y2, m2 = (y, m + 2) if m < 11 else (y + 1, 1)
            return start, calendar.timegm((y2, m2, 1, 0, 0, 0)) * 1_000_000
        return (calendar.timegm((key, 1, 1, 0, 0, 0)) * 1_000_000,
                calendar.timegm((key + 1, 1, 1, 0, 0, 0)) * 1_000_000)

    def row_bytes(self, row):
        return [_stored_bytes(c, v) for c, v in zip(self.columns, row)]

    def add_stats(self, row, inserted_us):
        sizes = self.row_bytes(row)
        key = self.partition_key(row, inserted_us)
        st = self.part_stats.get(key)
        if st is None:
            st = self.part_stats[key] = [0, [0] * len(self.columns)]
        st[0] += 1
        for i, b in enumerate(sizes):
            st[1][i] += b
        self.total_rows += 1
        total = sum(sizes)
        self.total_bytes += total
        return total

    def flush_streaming_buffer(self, now_ms, hold_ms):
        self.stream_batches = [b for b in self.stream_batches if now_ms - b[0] < hold_ms]

    def to_api(self, base_url, location, now_ms, hold_ms):
        self.flush_streaming_buffer(now_ms, hold_ms)
        srows = sum(b[1] for b in self.stream_batches)
        sbytes = sum(b[2] for b in self.stream_batches)
        d = {"kind": "bigquery#table",
             "etag": etag_of(self.key, self.modified_ms, self.total_rows),
             "id": "%s:%s.%s" % self.key,
             "selfLink": "%s/bigquery/v2/projects/%s/datasets/%s/tables/%s"
                         % ((base_url,) + self.key),
             "tableReference": {"projectId": self.project, "datasetId": self.dataset_id,
                                "tableId": self.table_id}}
        d.update(self.extra)
        d["schema"] = {"fields": self.schema}
        if self.time_partitioning:
            d["timePartitioning"] = dict(self.time_partitioning)
        if self.clustering:
            d["clustering"] = {"fields": list(self.clustering)}
        if self.require_partition_filter:
            d["requirePartitionFilter"] = True
        d.update({"numBytes": str(self.total_bytes - sbytes),
                  "numLongTermBytes": "0",
                  "numRows": str(self.total_rows - srows),
                  "creationTime": str(self.created_ms),
                  "lastModifiedTime": str(self.modified_ms),
                  "type": "TABLE",
                  "location": location})
        if self.stream_batches:
            d["streamingBuffer"] = {"estimatedBytes": str(sbytes), "estimatedRows": str(srows),
                                    "oldestEntryTime": str(self.stream_batches[0][0])}
        return d


def _stored_bytes(col, v):
    if v is None:
        return 0
    if col.repeated or col.std == "STRUCT":
        return _nested_bytes(col.std, col.fields, col.repeated, json.loads(v))
    return bqtypes.value_bytes(col.std, v)


def _nested_bytes(std, fields, repeated, v):
    if v is None:
        return 0
    if repeated:
        return sum(_nested_bytes(std, fields, False, x) for x in v)
    if std == "STRUCT":
        return sum(_nested_bytes(f["std"], f["fields"], f["repeated"], v.get(f["name"]))
                   for f in fields)
    return bqtypes.value_bytes(std, v)


class QueryJob:
    def __init__(self, project, job_id, location, created_ms, config, answers_left):
        self.project = project
        self.job_id = job_id
        self.location = location
        self.created_ms = created_ms
        self.started_ms = created_ms
        self.ended_ms = None
        self.config = config
        self.answers_left = answers_left
        self.output = []
        self.rows = []
        self.bytes_processed = 0
        self.bytes_billed = 0
        self.partitions = 0
        self.error = None  # ApiError for a failed job
        self.query_id = None
        self.etag = etag_of(project, job_id, created_ms)

    def dump(self):
        err = self.error
        return {"project": self.project, "job_id": self.job_id, "location": self.location,
                "created_ms": self.created_ms, "config": self.config,
                "output": [[c.name, c.std, c.fields, c.repeated] for c in self.output],
                "rows": [list(r) for r in self.rows], "bytes_processed": self.bytes_processed,
                "bytes_billed": self.bytes_billed, "partitions": self.partitions,
                "query_id": self.query_id,
                "error": None if err is None else [err.code, err.message, err.reason,
                                                   err.location, err.location_type]}

    @classmethod
    def restore(cls, d):
        from .sql import OutCol
        j = cls(d["project"], d["job_id"], d["location"], d["created_ms"], d["config"], 0)
        j.output = [OutCol(*c) for c in d["output"]]
        j.rows = [tuple(r) for r in d["rows"]]
        j.bytes_processed = d["bytes_processed"]
        j.bytes_billed = d["bytes_billed"]
        j.partitions = d["partitions"]
        j.query_id = d.get("query_id")
        if d.get("error"):
            code, message, reason, location, location_type = d["error"]
            j.error = ApiError(code, message, reason, location=location,
                               location_type=location_type)
        return j


def _ts_trunc(us, part):
    if us is None:
        return None
    if part in ("MICROSECOND",):
        return us
    unit = {"MILLISECOND": 1000, "SECOND": 1_000_000, "MINUTE": 60_000_000,
            "HOUR": HOUR_US, "DAY": DAY_US}.get(part)
    if unit:
        return us - us % unit
    dt = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=us)
    day0 = dt.date()
    if part == "WEEK":  # weeks start on Sunday
        day0 = day0 - datetime.timedelta(days=(day0.weekday() + 1) % 7)
    elif part == "MONTH":
        day0 = day0.replace(day=1)
    elif part == "QUARTER":
        day0 = day0.replace(month=(day0.month - 1) // 3 * 3 + 1, day=1)
    elif part == "YEAR":
        day0 = day0.replace(month=1, day=1)
    return (day0 - datetime.date(1970, 1, 1)).days * DAY_US


def _floordiv(a, b):
    if a is None or b is None:
        return None
    return a // b


class BigQueryState:
    def __init__(self, clock, data_file=None):
        self.clock = clock
        self.data_file = data_file
        self.lock = threading.RLock()
        self.conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA case_sensitive_like = ON")
        self.conn.create_function("bq_ts_trunc", 2, _ts_trunc, deterministic=True)
        self.conn.create_function("bq_floordiv", 2, _floordiv, deterministic=True)
        self.datasets = {}
        self.tables = {}
        self.jobs = OrderedDict()
        self.request_ids = {}
        self.insert_ids = {}  # table key -> {insertId: inserted time (s)}
        self.load_jobs = OrderedDict()
        self.pending_loads = []  # load jobs not yet DONE, in creation order
        self.load_counts = {}  # (project, dataset, table, UTC day) -> load jobs inserted
        self.jobs_journal = (Journal(os.path.dirname(data_file), "bigquery-jobs")
                             if data_file else None)
        self.seq = 0
        self.generation = 0
        self.compile_cache = {}

    # catalog ---------------------------------------------------------------------------------

    def reset(self):
        with self.lock:
            for t in self.tables.values():
                self.conn.execute('DROP TABLE IF EXISTS "%s"' % t.sqlite_name)
            self.datasets.clear()
            self.tables.clear()
            self.jobs.clear()
            self.load_jobs.clear()
            self.pending_loads = []
            self.load_counts.clear()
            self.request_ids.clear()
            self.insert_ids.clear()
            self.generation += 1
            self.compile_cache.clear()
            self.save()
            if self.jobs_journal is not None:
                self.jobs_journal.rewrite({"version": 1, "jobs": []})
            if self.data_file:
                folder = os.path.dirname(self.data_file)
                for name in os.listdir(folder):
                    if name.startswith("load-") and name.endswith(".ndjson"):
                        os.unlink(os.path.join(folder, name))

    def get_dataset(self, project, dataset_id):
        ds = self.datasets.get((project, dataset_id))
        if ds is None:
            raise not_found("Not found: Dataset %s:%s" % (project, dataset_id))
        return ds

    def add_dataset(self, ds):
        key = (ds.project, ds.dataset_id)
        if key in self.datasets:
            raise ApiError(409, "Already Exists: Dataset %s:%s" % key, "duplicate")
        self.datasets[key] = ds
        self.generation += 1
        self.save()

    def delete_dataset(self, project, dataset_id, delete_contents):
        ds = self.get_dataset(project, dataset_id)
        tables = [t for k, t in self.tables.items() if k[:2] == (project, dataset_id)]
        if tables and not delete_contents:
            raise ApiError(400, "Dataset %s:%s is still in use" % (project, dataset_id),
                           "resourceInUse")
        for t in tables:
            self._drop_table(t)
        del self.datasets[(ds.project, ds.dataset_id)]
        self.generation += 1
        self.save()

    def get_table(self, project, dataset_id, table_id):
        t = self.tables.get((project, dataset_id, table_id))
        if t is None:
            raise not_found("Not found: Table %s:%s.%s" % (project, dataset_id, table_id))
        return t

    def add_table(self, table, save=True):
        if table.key in self.tables:
            raise ApiError(409, "Already Exists: Table %s:%s.%s" % table.key, "duplicate")
        # a table without a schema still needs one SQLite column; it never receives rows
        cols = ", ".join('"%s"' % c.name for c in table.columns) or '"#empty"'
        self.conn.execute('CREATE TABLE "%s" (%s)' % (table.sqlite_name, cols))
        pidx = table._pidx
        if pidx is not None:
            self.conn.execute('CREATE INDEX "%s_p" ON "%s" ("%s")'
                              % (table.sqlite_name, table.sqlite_name,
                                 table.columns[pidx].name))
        self.tables[table.key] = table
        self.generation += 1
        if save:
            self.save()

    def truncate_table(self, table):
        """Drop every row (WRITE_TRUNCATE); the schema and options stay."""
        self.conn.execute('DELETE FROM "%s"' % table.sqlite_name)
        table.part_stats = {}
        table.stream_batches = []
        table.total_rows = 0
        table.total_bytes = 0
        table.ins_times = []
        self.insert_ids.pop(table.key, None)

    def delete_table(self, project, dataset_id, table_id):
        t = self.get_table(project, dataset_id, table_id)
        self._drop_table(t)
        self.generation += 1
        self.save()

    def _drop_table(self, t):
        self.conn.execute('DROP TABLE IF EXISTS "%s"' % t.sqlite_name)
        self.tables.pop(t.key, None)
        self.insert_ids.pop(t.key, None)

    def next_seq(self):
        self.seq += 1
        return self.seq

    def lookup_table(self, project, dataset_id, table_id, location):
        """Catalog interface for the SQL translator: 404s worded as jobs.query words them."""
        ds = self.datasets.get((project, dataset_id))
        if ds is None or (location and ds.location.lower() != location.lower()):
            raise not_found("Not found: Dataset %s:%s was not found in location %s"
                            % (project, dataset_id, location or "US"))
        t = self.tables.get((project, dataset_id, table_id))
        if t is None:
            raise not_found("Not found: Table %s:%s.%s was not found in location %s"
                            % (project, dataset_id, table_id, location or ds.location))
        return t

    # rows ------------------------------------------------------------------------------------

    def insert_rows(self, table, rows):
        """rows: list of stored-value tuples in column order. Returns bytes inserted."""
        now_us = self.clock.now_us()
        return self._insert_rows(table, rows, [now_us] * len(rows), streaming=True)

    def _insert_rows(self, table, rows, times, save=True, streaming=False):
        placeholders = ", ".join("?" * len(table.columns))
        self.conn.executemany('INSERT INTO "%s" VALUES (%s)' % (table.sqlite_name, placeholders),
                              rows)
        total = 0
        for row, t in zip(rows, times):
            total += table.add_stats(row, t)
        if streaming:
            table.stream_batches.append([self.clock.now_ms(), len(rows), total])
        table.ins_times.extend(times)  # kept for persistence (ingestion-time partitions)
        table.modified_ms = self.clock.now_ms()
        if save:
            self.save()
        return total

    # queries ---------------------------------------------------------------------------------

    def compile(self, text, project, default_dataset, location, param_types):
        from .sql import compile_query
        key = (self.generation, text, project, default_dataset, location,
               tuple(sorted(param_types.items())))
        c = self.compile_cache.get(key)
        if c is None:
            if len(self.compile_cache) > 512:
                self.compile_cache.clear()
            c = compile_query(self, text, project, default_dataset, location, param_types)
            self.compile_cache[key] = c
        return c

    def run(self, compiled, params, now_us):
        """Execute a compiled query. params: lower name -> (std, stored value).
        Returns (rows, bytes_processed, partitions_read)."""
        binds = {}
        for ph, spec in compiled.binds.items():
            std, value = params[spec.param]
            if spec.conv and value is not None:
                target = spec.conv.split("_TO_")[1]
                try:
                    value = (bqtypes.parse_timestamp(value) if target == "TIMESTAMP"
                             else bqtypes.convert_scalar("DATE", value, ""))
                except (ValueError, bqtypes.RowError):
                    raise invalid_query('Could not cast parameter "%s" value to type %s at [%d:%d]'
                                        % (spec.param, target, spec.pos[0], spec.pos[1]))
            binds[ph] = value
        for name, what, pos in compiled.limit_params:
            v = params[name][1]
            if v is None:
                raise invalid_query("%s must not be null at [%d:%d]" % (what, pos[0], pos[1]))
            if v < 0:
                raise invalid_query("%s must be non-negative at [%d:%d]" % (what, pos[0], pos[1]))
        binds["__now"] = now_us
        try:
            rows = self.conn.execute(compiled.sql, binds).fetchall()
        except sqlite3.Error as e:  # a translation gap: say so instead of a 500
            raise invalid_query("The datos GCP emulator could not run this query: %s" % e)
        except OverflowError:
            raise invalid_query("Integer overflow")
        bounds = None
        if compiled.bounds_sql:
            bounds = self.conn.execute("SELECT " + ", ".join(compiled.bounds_sql),
                                       binds).fetchone()
        processed = 0
        partitions = 0
        for scan in compiled.scans:
            t = scan.table
            cols = [i for i, c in enumerate(t.columns)
                    if (t.key, c.name.lower()) in compiled.used]
            for key, (nrows, sizes) in t.part_stats.items():
                if scan.bounds and not _partition_kept(t, key, scan.bounds, bounds):
                    continue
                partitions += 1
                processed += sum(sizes[i] for i in cols)
        return rows, processed, partitions

    # jobs --------------------------------------------------------------------------------------

    def add_job(self, job):
        self.jobs[(job.project, job.job_id)] = job
        while len(self.jobs) > MAX_JOBS:
            self.jobs.popitem(last=False)
        if self.jobs_journal is not None:
            self.jobs_journal.append([["q", job.dump()]])
            if self.jobs_journal.wants_compaction(floor=16 * 1024 * 1024):
                self._rewrite_jobs()

    def drop_job(self, project, job_id):
        if self.jobs.pop((project, job_id), None) is not None and self.jobs_journal is not None:
            self.jobs_journal.append([["qd", project, job_id]])

    def get_job(self, project, job_id):
        key = (project, job_id)
        return self.jobs.get(key) or self.load_jobs.get(key)

    def add_load_job(self, job):
        self.load_jobs[(job.project, job.job_id)] = job
        while len(self.load_jobs) > MAX_LOAD_JOBS:
            self.load_jobs.popitem(last=False)
        if not job.done:
            self.pending_loads.append(job)

    def _rewrite_jobs(self):
        self.jobs_journal.rewrite({"version": 1, "jobs": [j.dump() for j in self.jobs.values()]})

    def load_query_jobs(self):
        if self.jobs_journal is None:
            return
        snap, records = self.jobs_journal.load()
        for d in (snap or {}).get("jobs", []):
            j = QueryJob.restore(d)
            self.jobs[(j.project, j.job_id)] = j
        for r in records:
            if r[0] == "q":
                j = QueryJob.restore(r[1])
                self.jobs[(j.project, j.job_id)] = j
            elif r[0] == "qd":
                self.jobs.pop((r[1], r[2]), None)
        while len(self.jobs) > MAX_JOBS:
            self.jobs.popitem(last=False)
        self._rewrite_jobs()

    # persistence ----------------------------------------------------------------------------

    def save(self):
        if not self.data_file:
            return
        data = {"version": 1, "seq": self.seq,
                "datasets": [d.dump() for d in self.datasets.values()], "tables": [],
                "load_jobs": [j.dump() for j in self.load_jobs.values()],
                "load_counts": [list(k) + [n] for k, n in self.load_counts.items()]}
        for t in self.tables.values():
            rows = self.conn.execute('SELECT * FROM "%s" ORDER BY rowid' % t.sqlite_name).fetchall()
            data["tables"].append({
                "project": t.project, "dataset_id": t.dataset_id, "table_id": t.table_id,
                "schema": t.schema, "time_partitioning": t.time_partitioning,
                "clustering": t.clustering,
                "require_partition_filter": t.require_partition_filter,
                "created_ms": t.created_ms, "modified_ms": t.modified_ms, "extra": t.extra,
                "stream_batches": t.stream_batches,
                "rows": [list(r) for r in rows],
                "times": t.ins_times})
        write_atomic(self.data_file, json.dumps(data, separators=(",", ":")).encode("utf-8"))

    def load(self):
        self.load_query_jobs()
        if not self.data_file or not os.path.exists(self.data_file):
            return
        with open(self.data_file, encoding="utf-8") as f:
            data = json.load(f)
        self.seq = data.get("seq", 0)
        for d in data.get("datasets", []):
            ds = Dataset(d["project"], d["dataset_id"], d["location"], d["created_ms"],
                         d.get("extra", {}))
            ds.modified_ms = d.get("modified_ms", ds.created_ms)
            self.datasets[(ds.project, ds.dataset_id)] = ds
        saved, self.data_file = self.data_file, None  # no re-save while loading
        try:
            for td in data.get("tables", []):
                t = Table(td["project"], td["dataset_id"], td["table_id"], td["schema"],
                          td.get("time_partitioning"), td.get("clustering"),
                          td.get("require_partition_filter", False), td["created_ms"],
                          td.get("extra", {}), self.next_seq())
                rows = [tuple(r) for r in td.get("rows", [])]
                times = td.get("times") or [0] * len(rows)
                self.add_table(t)
                if rows:
                    self._insert_rows(t, rows, times, save=False)
                t.modified_ms = td.get("modified_ms", t.created_ms)
                t.stream_batches = td.get("stream_batches", [])
            from .load import LoadJob
            for jd in data.get("load_jobs", []):
                self.add_load_job(LoadJob.restore(jd))
            for p, d, t, day, n in data.get("load_counts", []):
                self.load_counts[(p, d, t, day)] = n
        finally:
            self.data_file = saved


def _partition_kept(table, key, bound_specs, values):
    if key == NULL_PARTITION:
        return False  # any comparison with NULL is not TRUE
    start, end = table.partition_range(key)
    last = end - 1
    for op, idx in bound_specs:
        v = values[idx]
        if v is None:
            return False
        if op == ">=" and not last >= v:
            return False
        if op == ">" and not last > v:
            return False
        if op == "<" and not start < v:
            return False
        if op == "<=" and not start <= v:
            return False
        if op == "=" and not (start <= v <= last):
            return False
    return True
