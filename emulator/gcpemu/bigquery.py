"""BigQuery v2 REST handlers: datasets, tables, tabledata.insertAll, query jobs (docs/google-apis.md 2).

Routes answer under both `/bigquery/v2/projects/...` and bare `/projects/...` (what Google's
Node.js client uses with BIGQUERY_EMULATOR_HOST)."""
import base64
import json
import re
import secrets

from . import bqtypes
from .errors import ApiError, invalid, invalid_query, not_found
from .http import Response, json_response
from .state import Dataset, QueryJob, Table

P = r"^(?:/bigquery/v2)?/projects/(?P<project>[^/]+)"

# Writable/known top-level names of request bodies (discovery rev. 20250928). Unknown names
# are refused the way Google's JSON front end refuses them.
QUERY_REQUEST_FIELDS = {
    "connectionProperties", "continuous", "createSession", "defaultDataset",
    "destinationEncryptionConfiguration", "dryRun", "formatOptions", "jobCreationMode",
    "jobTimeoutMs", "kind", "labels", "location", "maxResults", "maxSlots", "maximumBytesBilled",
    "parameterMode", "preserveNulls", "query", "queryParameters", "requestId", "reservation",
    "timeoutMs", "useLegacySql", "useQueryCache", "writeIncrementalResults"}
DATASET_FIELDS = {
    "access", "creationTime", "datasetReference", "defaultCollation",
    "defaultEncryptionConfiguration", "defaultPartitionExpirationMs", "defaultRoundingMode",
    "defaultTableExpirationMs", "description", "etag", "externalCatalogDatasetOptions",
    "externalDatasetReference", "friendlyName", "id", "isCaseInsensitive", "kind", "labels",
    "lastModifiedTime", "linkedDatasetMetadata", "linkedDatasetSource", "location",
    "maxTimeTravelHours", "resourceTags", "restrictions", "satisfiesPzi", "satisfiesPzs",
    "selfLink", "storageBillingModel", "tags", "type"}
TABLE_FIELDS = {
    "biglakeConfiguration", "cloneDefinition", "clustering", "creationTime", "defaultCollation",
    "defaultRoundingMode", "description", "encryptionConfiguration", "etag", "expirationTime",
    "externalCatalogTableOptions", "externalDataConfiguration", "friendlyName", "id", "kind",
    "labels", "lastModifiedTime", "location", "managedTableType", "materializedView",
    "materializedViewStatus", "maxStaleness", "model", "numActiveLogicalBytes",
    "numActivePhysicalBytes", "numBytes", "numCurrentPhysicalBytes", "numLongTermBytes",
    "numLongTermLogicalBytes", "numLongTermPhysicalBytes", "numPartitions", "numPhysicalBytes",
    "numRows", "numTimeTravelPhysicalBytes", "numTotalLogicalBytes", "numTotalPhysicalBytes",
    "partitionDefinition", "rangePartitioning", "replicas", "requirePartitionFilter",
    "resourceTags", "restrictions", "schema", "selfLink", "snapshotDefinition",
    "streamingBuffer", "tableConstraints", "tableReference", "tableReplicationInfo",
    "timePartitioning", "type", "view"}
FIELD_SCHEMA_FIELDS = {
    "categories", "collation", "dataPolicies", "defaultValueExpression", "description", "fields",
    "foreignTypeDefinition", "maxLength", "mode", "name", "policyTags", "precision",
    "rangeElementType", "roundingMode", "scale", "timestampPrecision", "type"}
INSERT_ALL_FIELDS = {"ignoreUnknownValues", "kind", "rows", "skipInvalidRows", "templateSuffix",
                     "traceId"}
DATASET_KEEP = ("friendlyName", "description", "labels", "defaultTableExpirationMs",
                "defaultPartitionExpirationMs", "access", "maxTimeTravelHours",
                "defaultCollation", "isCaseInsensitive", "storageBillingModel")
TABLE_KEEP = ("friendlyName", "description", "labels", "expirationTime")

DATASET_ID_RE = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
TABLE_ID_RE = re.compile(r"^[\w\- ]{1,1024}$", re.UNICODE)
JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,1024}$")
FIELD_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")
CLUSTERABLE = {"STRING", "INT64", "NUMERIC", "BIGNUMERIC", "BOOL", "TIMESTAMP", "DATE",
               "DATETIME", "GEOGRAPHY"}
PARAM_TYPES = {"STRING", "INT64", "FLOAT64", "BOOL", "TIMESTAMP", "DATE", "NUMERIC",
               "BIGNUMERIC", "BYTES", "DATETIME", "TIME"}
MAX_INSERT_ROWS = 50_000
MAX_INSERT_BYTES = 10 * 1024 * 1024
PAGE_BYTES = 10 * 1024 * 1024
MIB = 1024 * 1024
MIN_BILLED_PER_TABLE = 10 * MIB
REQUEST_ID_WINDOW_S = 15 * 60


def unknown_name(name, where):
    return invalid('Invalid JSON payload received. Unknown name "%s" at \'%s\': Cannot find '
                   'field.' % (name, where))


def check_fields(obj, allowed, where):
    for k in obj:
        if k not in allowed:
            raise unknown_name(k, where)


def int64_field(obj, name, where, minimum=None):
    """int64 fields arrive as JSON strings (numbers are accepted too)."""
    v = obj.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, str)) or \
            (isinstance(v, str) and not re.match(r"^-?\d+$", v.strip())):
        raise invalid('Invalid value at \'%s.%s\' (TYPE_INT64), %s'
                      % (where, name, json.dumps(v)))
    n = int(v)
    if minimum is not None and n < minimum:
        raise invalid("Invalid value for %s: %s" % (name, v))
    return n


def uint32_field(obj, name, where):
    v = obj.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, str)) or \
            (isinstance(v, str) and not v.strip().isdigit()):
        raise invalid('Invalid value at \'%s.%s\' (TYPE_UINT32), %s'
                      % (where, name, json.dumps(v)))
    n = int(v)
    if not 0 <= n < 2 ** 32:
        raise invalid('Invalid value at \'%s.%s\' (TYPE_UINT32), %s'
                      % (where, name, json.dumps(v)))
    return n


def bool_field(obj, name, where):
    v = obj.get(name)
    if v is None:
        return None
    if not isinstance(v, bool):
        raise invalid('Invalid value at \'%s.%s\' (TYPE_BOOL), %s'
                      % (where, name, json.dumps(v)))
    return v


def new_job_id():
    return "job_" + secrets.token_urlsafe(21)


class BigQueryApi:
    def __init__(self, app):
        self.app = app
        self.state = app.bq

    def routes(self):
        r = [
            ("POST", P + r"/datasets$", "bigquery.datasets.insert", self.datasets_insert),
            ("GET", P + r"/datasets/(?P<dataset>[^/]+)$", "bigquery.datasets.get",
             self.datasets_get),
            ("DELETE", P + r"/datasets/(?P<dataset>[^/]+)$", "bigquery.datasets.delete",
             self.datasets_delete),
            ("POST", P + r"/datasets/(?P<dataset>[^/]+)/tables$", "bigquery.tables.insert",
             self.tables_insert),
            ("GET", P + r"/datasets/(?P<dataset>[^/]+)/tables/(?P<table>[^/]+)$",
             "bigquery.tables.get", self.tables_get),
            ("DELETE", P + r"/datasets/(?P<dataset>[^/]+)/tables/(?P<table>[^/]+)$",
             "bigquery.tables.delete", self.tables_delete),
            ("POST", P + r"/datasets/(?P<dataset>[^/]+)/tables/(?P<table>[^/]+)/insertAll$",
             "bigquery.tabledata.insertAll", self.insert_all),
            ("POST", P + r"/queries$", "bigquery.jobs.query", self.jobs_query),
            ("GET", P + r"/queries/(?P<job>[^/]+)$", "bigquery.jobs.getQueryResults",
             self.get_query_results),
            ("GET", P + r"/jobs/(?P<job>[^/]+)$", "bigquery.jobs.get", self.jobs_get),
            ("GET", P + r"/datasets/(?P<dataset>[^/]+)/tables/(?P<table>[^/]+)/data$",
             "bigquery.tabledata.list", self.tabledata_list),
        ]
        return [(m, p, e, h, "bigquery") for m, p, e, h in r]

    # helpers ------------------------------------------------------------------------------

    def respond(self, req, obj, status=200):
        pretty = req.query.get("prettyPrint", "true").lower() != "false"
        return json_response(obj, status, pretty=pretty)

    @property
    def settings(self):
        return self.app.settings

    # datasets -------------------------------------------------------------------------------

    def datasets_insert(self, req, project):
        body = req.json()
        check_fields(body, DATASET_FIELDS, "dataset")
        ref = body.get("datasetReference")
        if not isinstance(ref, dict) or not ref.get("datasetId"):
            raise invalid("Required parameter is missing: datasetReference.datasetId")
        check_fields(ref, {"projectId", "datasetId"}, "dataset.dataset_reference")
        if ref.get("projectId") not in (None, project):
            raise invalid("Dataset project %s does not match the project %s in the request URL"
                          % (ref.get("projectId"), project))
        dataset_id = ref["datasetId"]
        if not isinstance(dataset_id, str) or not DATASET_ID_RE.match(dataset_id):
            raise invalid('Invalid dataset ID "%s". Dataset IDs must be alphanumeric (plus '
                          'underscores) and must be at most 1024 characters long.' % dataset_id)
        location = body.get("location")
        if location is None:
            location = "US"  # BigQuery's default when the request names none
        if not isinstance(location, str) or not location.strip():
            raise ApiError(400, "Invalid location: %s" % json.dumps(location), "badRequest")
        extra = {}
        for k in DATASET_KEEP:
            if k in body:
                extra[k] = body[k]
        for k in ("defaultTableExpirationMs", "defaultPartitionExpirationMs"):
            if k in extra:
                extra[k] = str(int64_field(body, k, "dataset", minimum=0))
        with self.state.lock:
            ds = Dataset(project, dataset_id, location, self.app.clock.now_ms(), extra)
            self.state.add_dataset(ds)
            return self.respond(req, ds.to_api(self.app.base_url))

    def datasets_get(self, req, project, dataset):
        with self.state.lock:
            ds = self.state.get_dataset(project, dataset)
            return self.respond(req, ds.to_api(self.app.base_url))

    def datasets_delete(self, req, project, dataset):
        with self.state.lock:
            self.state.delete_dataset(project, dataset, req.query_bool("deleteContents"))
        return Response(204, b"")

    # tables -------------------------------------------------------------------------------

    def tables_insert(self, req, project, dataset):
        body = req.json()
        check_fields(body, TABLE_FIELDS, "table")
        ref = body.get("tableReference")
        if not isinstance(ref, dict) or not ref.get("tableId"):
            raise invalid("Required parameter is missing: tableReference.tableId")
        check_fields(ref, {"projectId", "datasetId", "tableId"}, "table.table_reference")
        if ref.get("projectId") not in (None, project) or \
                ref.get("datasetId") not in (None, dataset):
            raise invalid("Table reference %s:%s does not match the dataset %s:%s in the "
                          "request URL" % (ref.get("projectId", project),
                                           ref.get("datasetId", dataset), project, dataset))
        table_id = ref["tableId"]
        if not isinstance(table_id, str) or not TABLE_ID_RE.match(table_id) or "$" in table_id:
            raise invalid('Invalid table ID "%s".' % table_id)
        for k in ("view", "materializedView", "externalDataConfiguration", "rangePartitioning",
                  "snapshotDefinition", "cloneDefinition", "model", "biglakeConfiguration"):
            if body.get(k):
                raise ApiError(501, "%s tables are not supported by the datos GCP emulator" % k,
                               "notImplemented")
        schema = normalize_schema(body.get("schema"))
        top = {f["name"].lower(): f for f in schema}
        tp = body.get("timePartitioning")
        require_filter = bool(body.get("requirePartitionFilter"))
        if tp is not None:
            tp, rpf = normalize_time_partitioning(tp, top)
            require_filter = require_filter or rpf
        clustering = body.get("clustering")
        if clustering is not None:
            clustering = normalize_clustering(clustering, top)
        extra = {k: body[k] for k in TABLE_KEEP if k in body}
        if "expirationTime" in extra:
            extra["expirationTime"] = str(int64_field(body, "expirationTime", "table"))
        with self.state.lock:
            ds = self.state.get_dataset(project, dataset)
            t = Table(project, dataset, table_id, schema, tp, clustering, require_filter,
                      self.app.clock.now_ms(), extra, self.state.next_seq())
            self.state.add_table(t)
            return self.respond(req, self._table_api(t, ds))

    def _table_api(self, t, ds):
        return t.to_api(self.app.base_url, ds.location, self.app.clock.now_ms(),
                        int(self.settings["streaming_buffer_seconds"] * 1000))

    def tables_get(self, req, project, dataset, table):
        with self.state.lock:
            t = self.state.get_table(project, dataset, table)
            ds = self.state.get_dataset(project, dataset)
            return self.respond(req, self._table_api(t, ds))

    def tables_delete(self, req, project, dataset, table):
        with self.state.lock:
            self.state.delete_table(project, dataset, table)
        return Response(204, b"")

    # tabledata.insertAll --------------------------------------------------------------------

    def insert_all(self, req, project, dataset, table):
        if len(req.body) > MAX_INSERT_BYTES:
            # [mem] limit text; a front-end 413 is also possible in production.
            raise invalid("Request payload size exceeds the limit: %d bytes." % MAX_INSERT_BYTES)
        body = req.json()
        check_fields(body, INSERT_ALL_FIELDS, "body")
        rows = body.get("rows")
        if rows is None or rows == []:
            raise invalid("No rows present in the request.")
        if not isinstance(rows, list):
            raise invalid("Invalid value at 'rows': expected a list of rows.")
        if len(rows) > MAX_INSERT_ROWS:
            raise invalid("too many rows present in the request, limit: %d row count: %d."
                          % (MAX_INSERT_ROWS, len(rows)))
        if body.get("templateSuffix"):
            raise ApiError(501, "templateSuffix is not supported by the datos GCP emulator",
                           "notImplemented")
        skip_invalid = bool_field(body, "skipInvalidRows", "body") or False
        ignore_unknown = bool_field(body, "ignoreUnknownValues", "body") or False
        for i, r in enumerate(rows):
            if not isinstance(r, dict):
                raise invalid("Invalid value at 'rows[%d]': expected an object." % i)
            check_fields(r, {"insertId", "json"}, "rows[%d]" % i)
            if "insertId" in r and not isinstance(r["insertId"], str):
                raise invalid("Invalid value at 'rows[%d].insert_id' (TYPE_STRING)" % i)
        with self.state.lock:
            t = self.state.get_table(project, dataset, table)
            good, errors = [], []
            for i, r in enumerate(rows):
                data = r.get("json")
                if data is None:
                    data = {}
                if not isinstance(data, dict):
                    errors.append({"index": i, "errors": [{"reason": "invalid", "location": "",
                                                           "message": "Row is not a JSON object."}]})
                    continue
                try:
                    good.append((i, r.get("insertId"), convert_row(t, data, ignore_unknown)))
                except RowErrors as e:
                    errors.append({"index": i, "errors": e.items})
            if errors and not skip_invalid:
                bad = {e["index"] for e in errors}
                for i in range(len(rows)):
                    if i not in bad:
                        errors.append({"index": i, "errors": [{"reason": "stopped",
                                                               "message": ""}]})
                good = []
            now = self.app.clock.now()
            window = float(self.settings["insert_id_window"])
            seen = self.state.insert_ids.setdefault(t.key, {})
            if len(seen) > 200_000:
                for k in [k for k, ts in seen.items() if now - ts >= window]:
                    del seen[k]
            to_insert = []
            for i, iid, values in good:
                if iid:
                    ts = seen.get(iid)
                    if ts is not None and now - ts < window:
                        continue  # best-effort dedup: silently dropped, reported as success
                    seen[iid] = now
                to_insert.append(values)
            if to_insert and t.columns:
                self.state.insert_rows(t, to_insert)
        out = {"kind": "bigquery#tableDataInsertAllResponse"}
        if errors:
            out["insertErrors"] = errors
        return self.respond(req, out)

    # jobs.query -----------------------------------------------------------------------------

    def jobs_query(self, req, project):
        body = req.json()
        check_fields(body, QUERY_REQUEST_FIELDS, "query_request")
        text = body.get("query")
        if not isinstance(text, str) or not text.strip():
            raise invalid("Required parameter is missing: query")
        legacy = body.get("useLegacySql")
        if legacy is not False:
            if legacy is not None and not isinstance(legacy, bool):
                bool_field(body, "useLegacySql", "query_request")
            raise invalid_query("Legacy SQL is not supported by the datos GCP emulator. "
                                "BigQuery runs legacy SQL when useLegacySql is absent or true: "
                                'send "useLegacySql": false.')
        for k in ("createSession", "continuous", "connectionProperties"):
            if body.get(k):
                raise ApiError(501, "%s is not supported by the datos GCP emulator" % k,
                               "notImplemented")
        location = body.get("location")
        if location is not None and (not isinstance(location, str) or not location):
            raise ApiError(400, "Invalid location: %s" % json.dumps(location), "badRequest")
        max_results = uint32_field(body, "maxResults", "query_request")
        uint32_field(body, "timeoutMs", "query_request")
        max_billed = int64_field(body, "maximumBytesBilled", "query_request")
        fmt = body.get("formatOptions") or {}
        if not isinstance(fmt, dict):
            raise invalid("Invalid value at 'query_request.format_options'")
        check_fields(fmt, {"useInt64Timestamp", "timestampOutputFormat"},
                     "query_request.format_options")
        use_int64 = bool(bool_field(fmt, "useInt64Timestamp", "query_request.format_options"))
        use_int64 = self._timestamp_format(fmt.get("timestampOutputFormat"), use_int64)
        mode = body.get("jobCreationMode")
        if mode not in (None, "JOB_CREATION_MODE_UNSPECIFIED", "JOB_CREATION_REQUIRED",
                        "JOB_CREATION_OPTIONAL"):
            raise invalid('Invalid value at \'query_request.job_creation_mode\', "%s"' % mode)
        default_dataset = None
        dd = body.get("defaultDataset")
        if dd is not None:
            if not isinstance(dd, dict) or not isinstance(dd.get("datasetId"), str) or \
                    not dd["datasetId"] or not isinstance(dd.get("projectId", ""), str):
                raise invalid("defaultDataset.datasetId is required")
            check_fields(dd, {"projectId", "datasetId"}, "query_request.default_dataset")
            default_dataset = (dd.get("projectId") or project, dd["datasetId"])
        param_types, param_values = parse_parameters(body)
        request_id = body.get("requestId")
        now = self.app.clock.now()
        with self.state.lock:
            if request_id:
                hit = self.state.request_ids.get((project, request_id))
                if hit and now - hit[1] < REQUEST_ID_WINDOW_S:
                    job = self.state.get_job(project, hit[0])
                    if job is not None:
                        return self.respond(req, self.answer(job, "bigquery#queryResponse",
                                                             use_int64, max_results, 0, True))
            compiled = self.state.compile(text, project, default_dataset, location,
                                          param_types)
            # the dataset's spelling of its location (the request's matched it, any case)
            job_location = (self.state.datasets[
                (compiled.tables[0].project, compiled.tables[0].dataset_id)].location
                if compiled.tables else (location or "US"))
            polls = int(self.settings["query_incomplete_polls"])
            try:
                rows, processed, partitions = self.state.run(compiled, param_values,
                                                             self.app.clock.now_us())
                run_error = None
            except ApiError as e:
                # An error found while running (not while parsing) fails the job after it
                # was created: with jobComplete:false answers configured, the client sees
                # it from getQueryResults, and jobs.get shows DONE with errorResult.
                if polls <= 0 or body.get("dryRun"):
                    raise
                rows, processed, partitions, run_error = [], 0, 0, e
        billed = billed_bytes(processed, len(compiled.tables))
        if max_billed is not None and billed > max_billed:
            raise ApiError(400, "Query exceeded limit for bytes billed: %d. %d or higher "
                                "required." % (max_billed, billed), "bytesBilledLimitExceeded")
        dry = bool(body.get("dryRun"))
        if dry:
            return self.respond(req, {
                "kind": "bigquery#queryResponse",
                "schema": {"fields": [c.schema() for c in compiled.output]},
                "jobReference": {"projectId": project, "location": job_location},
                "totalBytesProcessed": str(processed), "jobComplete": True, "cacheHit": False})
        config = {"query": text, "useLegacySql": False, "priority": "INTERACTIVE"}
        for k in ("parameterMode", "queryParameters", "defaultDataset", "labels"):
            if k in body:
                config[k] = body[k]
        if max_billed is not None:
            config["maximumBytesBilled"] = str(max_billed)
        job = QueryJob(project, new_job_id(), job_location, self.app.clock.now_ms(), config,
                       polls)
        job.error = run_error
        job.output = compiled.output
        job.rows = rows
        job.bytes_processed = processed
        job.bytes_billed = billed
        job.partitions = partitions
        job.query_id = "query_" + secrets.token_urlsafe(18)
        self.app.count_query_bytes(processed, billed)
        with self.state.lock:
            self.state.add_job(job)
            if request_id:
                self.state.request_ids[(project, request_id)] = (job.job_id, now)
                if len(self.state.request_ids) > 50_000:
                    self.state.request_ids.clear()
        optional = mode == "JOB_CREATION_OPTIONAL"
        ans = self.answer(job, "bigquery#queryResponse", use_int64, max_results, 0, True)
        if optional:
            if ans.get("jobComplete") and "pageToken" not in ans:
                # Google may skip creating a job for a short query: no jobReference then.
                del ans["jobReference"]
                with self.state.lock:
                    self.state.drop_job(project, job.job_id)
            else:
                ans["jobCreationReason"] = {"code": "LARGE_RESULTS" if ans.get("jobComplete")
                                            else "LONG_RUNNING"}
        return self.respond(req, ans)

    def _timestamp_format(self, value, use_int64):
        if value in (None, "TIMESTAMP_OUTPUT_FORMAT_UNSPECIFIED"):
            return use_int64
        if value == "INT64":
            return True
        if value == "FLOAT64":
            return False
        raise ApiError(501, "formatOptions.timestampOutputFormat %s is not supported by the "
                            "datos GCP emulator" % value, "notImplemented")

    def answer(self, job, kind, use_int64, max_results, start, with_query_id, page_token=None):
        """One answer about a query job; the first `query_incomplete_polls` are incomplete."""
        ref = {"projectId": job.project, "jobId": job.job_id, "location": job.location}
        with self.state.lock:
            if job.answers_left > 0:
                job.answers_left -= 1
                return {"kind": kind, "jobReference": ref, "jobComplete": False}
            if job.ended_ms is None:
                job.ended_ms = self.app.clock.now_ms()
        if job.error is not None:
            raise job.error
        out = {"kind": kind}
        if kind == "bigquery#getQueryResultsResponse":
            out["etag"] = job.etag
        out["schema"] = {"fields": [c.schema() for c in job.output]}
        out["jobReference"] = ref
        total = len(job.rows)
        out["totalRows"] = str(total)
        page, next_start = self.page(job, use_int64, max_results, start)
        if next_start is not None:
            out["pageToken"] = encode_page_token(job.job_id, next_start)
        if page:
            out["rows"] = page
        out["totalBytesProcessed"] = str(job.bytes_processed)
        if kind == "bigquery#queryResponse":
            out["totalBytesBilled"] = str(job.bytes_billed)
        out["jobComplete"] = True
        out["cacheHit"] = False
        if with_query_id:
            out["queryId"] = job.query_id
        return out

    def page(self, job, use_int64, max_results, start):
        cols = job.output
        n = len(job.rows)
        limit = n - start if max_results is None else min(max_results, n - start)
        out, size = [], 0
        i = start
        while i < start + limit:
            row = job.rows[i]
            cells = {"f": [{"v": bqtypes.render_cell(c.std, v, use_int64, c.fields,
                                                     c.repeated)}
                           for c, v in zip(cols, row)]}
            rsize = len(json.dumps(cells, separators=(",", ":")))
            if out and size + rsize > PAGE_BYTES:
                break
            out.append(cells)
            size += rsize
            i += 1
        return out, (i if i < n else None)

    # jobs.getQueryResults / jobs.get ------------------------------------------------------

    def find_job(self, req, project, job_id):
        job = self.state.get_job(project, job_id)
        loc = req.query.get("location")
        if job is not None:
            if loc is None:
                ok = job.location.upper() in ("US", "EU")
            else:
                ok = loc.lower() == job.location.lower()
            if ok:
                return job
        raise not_found("Not found: Job %s:%s" % (project, job_id))

    def get_query_results(self, req, project, job):
        q = req.query
        max_results = uint32_field(q, "maxResults", "")
        use_int64 = q.get("formatOptions.useInt64Timestamp", "false").lower() == "true"
        use_int64 = self._timestamp_format(q.get("formatOptions.timestampOutputFormat"),
                                           use_int64)
        j = self.find_job(req, project, job)
        if not isinstance(j, QueryJob):
            raise invalid("Job %s:%s.%s is not a query job: getQueryResults answers only "
                          "query jobs" % (j.project, j.location, j.job_id))
        start = 0
        if q.get("pageToken"):
            start = decode_page_token(q["pageToken"], j.job_id)
        elif q.get("startIndex"):
            if not q["startIndex"].isdigit():
                raise invalid("Invalid value for startIndex: %s" % q["startIndex"])
            start = int(q["startIndex"])
        if start > len(j.rows):
            start = len(j.rows)
        return self.respond(req, self.answer(j, "bigquery#getQueryResultsResponse", use_int64,
                                             max_results, start, False))

    def jobs_get(self, req, project, job):
        j = self.find_job(req, project, job)
        if not isinstance(j, QueryJob):
            with self.state.lock:
                return self.respond(req, self.app.loads.render(j))
        with self.state.lock:
            running = j.answers_left > 0
            if running:
                j.answers_left -= 1
            elif j.ended_ms is None:
                j.ended_ms = self.app.clock.now_ms()
        out = {"kind": "bigquery#job", "etag": j.etag,
               "id": "%s:%s.%s" % (j.project, j.location, j.job_id),
               "selfLink": "%s/bigquery/v2/projects/%s/jobs/%s?location=%s"
                           % (self.app.base_url, j.project, j.job_id, j.location),
               "user_email": self.app.trusted_keys[0].email,
               "configuration": {"query": dict(j.config), "jobType": "QUERY"},
               "jobReference": {"projectId": j.project, "jobId": j.job_id,
                                "location": j.location}}
        stats = {"creationTime": str(j.created_ms), "startTime": str(j.started_ms)}
        if running:
            out["statistics"] = stats
            out["status"] = {"state": "RUNNING"}
        else:
            stats["endTime"] = str(j.ended_ms)
            stats["totalBytesProcessed"] = str(j.bytes_processed)
            stats["query"] = {"totalBytesProcessed": str(j.bytes_processed),
                              "totalBytesBilled": str(j.bytes_billed),
                              "totalPartitionsProcessed": str(j.partitions),
                              "cacheHit": False, "statementType": "SELECT",
                              "billingTier": 1}
            out["statistics"] = stats
            out["status"] = {"state": "DONE"}
            if j.error is not None:
                err = {"reason": j.error.reason, "message": j.error.message}
                out["status"]["errorResult"] = err
                out["status"]["errors"] = [err]
        out["principal_subject"] = "serviceAccount:" + self.app.trusted_keys[0].email
        return self.respond(req, out)

    # tabledata.list -----------------------------------------------------------------------

    def tabledata_list(self, req, project, dataset, table):
        q = req.query
        max_results = uint32_field(q, "maxResults", "")
        use_int64 = q.get("formatOptions.useInt64Timestamp", "false").lower() == "true"
        use_int64 = self._timestamp_format(q.get("formatOptions.timestampOutputFormat"),
                                           use_int64)
        with self.state.lock:
            t = self.state.get_table(project, dataset, table)
            cols = list(range(len(t.columns)))
            if q.get("selectedFields"):
                cols = []
                for name in q["selectedFields"].split(","):
                    i = t.col_index.get(name.strip().lower())
                    if i is None:
                        raise invalid("Invalid field selection %s" % name.strip())
                    cols.append(i)
            start = 0
            if q.get("pageToken"):
                start = decode_page_token(q["pageToken"], "tabledata:" + t.sqlite_name)
            elif q.get("startIndex"):
                if not q["startIndex"].isdigit():
                    raise invalid("Invalid value for startIndex: %s" % q["startIndex"])
                start = int(q["startIndex"])
            total = t.total_rows
            limit = total if max_results is None else max_results
            fetched = self.state.conn.execute(
                'SELECT * FROM "%s" ORDER BY rowid LIMIT ? OFFSET ?' % t.sqlite_name,
                (limit, start)).fetchall() if t.columns else []
            rows, size = [], 0
            for r in fetched:
                cells = {"f": [{"v": bqtypes.render_cell(
                    t.columns[i].std, r[i], use_int64, t.columns[i].fields,
                    t.columns[i].repeated)} for i in cols]}
                rsize = len(json.dumps(cells, separators=(",", ":")))
                if rows and size + rsize > PAGE_BYTES:
                    break
                rows.append(cells)
                size += rsize
            out = {"kind": "bigquery#tableDataList",
                   "etag": etag_of_rows(t), "totalRows": str(total)}
            nxt = start + len(rows)
            if rows and nxt < total:
                out["pageToken"] = encode_page_token("tabledata:" + t.sqlite_name, nxt)
            if rows:
                out["rows"] = rows
        return self.respond(req, out)


def etag_of_rows(t):
    from .state import etag_of
    return etag_of(t.key, t.modified_ms, t.total_rows)


def billed_bytes(processed, tables):
    """Bytes billed for on-demand queries: processed bytes rounded up to the next MiB, with a
    10 MiB minimum per referenced table. Stricter than BigQuery, which bills nothing for a
    query that processes 0 bytes: here a query over a table always bills at least 10 MiB,
    so a small maximumBytesBilled fails the same way in tests as on a real, large table."""
    billed = -(-processed // MIB) * MIB
    return max(billed, MIN_BILLED_PER_TABLE * tables)


def encode_page_token(job_id, start):
    raw = json.dumps([job_id, start]).encode()
    return "BH" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token, job_id):
    try:
        if not token.startswith("BH"):
            raise ValueError
        s = token[2:]
        jid, start = json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
        if jid != job_id or not isinstance(start, int) or start < 0:
            raise ValueError
        return start
    except (ValueError, TypeError, json.JSONDecodeError):
        raise invalid("Invalid page token: %s" % token) from None


# ------------------------------------------------------------------------------------------
# schema / partitioning validation

def normalize_schema(schema, where="table.schema"):
    if schema is None:
        return []
    if not isinstance(schema, dict):
        raise invalid("Invalid value at '%s'" % where)
    check_fields(schema, {"fields", "foreignTypeInfo"}, where)
    return _normalize_fields(schema.get("fields") or [], where)


def _normalize_fields(fields, where):
    if not isinstance(fields, list):
        raise invalid("Invalid value at '%s.fields'" % where)
    out, seen = [], set()
    for f in fields:
        if not isinstance(f, dict):
            raise invalid("Invalid value at '%s.fields'" % where)
        check_fields(f, FIELD_SCHEMA_FIELDS, where + ".fields")
        name = f.get("name")
        if not isinstance(name, str) or not FIELD_NAME_RE.match(name):
            raise invalid("Invalid field name \"%s\". Fields must contain only letters, "
                          "numbers, and underscores, start with a letter or underscore, and be "
                          "at most 300 characters long." % name)
        if name.lower() in seen:
            raise invalid("Field %s already exists in schema" % name)
        seen.add(name.lower())
        if not f.get("type"):
            raise invalid("Field %s is missing a type." % name)
        std = bqtypes.standard_type(f["type"]) if isinstance(f["type"], str) else None
        if std is None:
            raise invalid("Invalid value for type: %s is not a valid value" % f.get("type"))
        mode = f.get("mode") or "NULLABLE"
        mode = mode.upper() if isinstance(mode, str) else mode
        if mode not in ("NULLABLE", "REQUIRED", "REPEATED"):
            raise invalid("Invalid value for mode: %s is not a valid value" % f.get("mode"))
        nf = {"name": name, "type": bqtypes.legacy_name(std), "mode": mode}
        if std == "STRUCT":
            if not f.get("fields"):
                raise invalid("Field %s is type RECORD but has no schema" % name)
            nf["fields"] = _normalize_fields(f["fields"], where + ".fields")
        elif f.get("fields"):
            raise invalid("Field %s is type %s and cannot have fields" % (name, nf["type"]))
        for k in ("description", "maxLength", "precision", "scale", "defaultValueExpression",
                  "collation", "policyTags"):
            if k in f:
                nf[k] = f[k]
        out.append(nf)
    return out


def normalize_time_partitioning(tp, top):
    if not isinstance(tp, dict):
        raise invalid("Invalid value at 'table.time_partitioning'")
    check_fields(tp, {"expirationMs", "field", "requirePartitionFilter", "type"},
                 "table.time_partitioning")
    ptype = tp.get("type")
    if ptype not in ("DAY", "HOUR", "MONTH", "YEAR"):
        raise invalid("Invalid value for timePartitioning.type: %s. The supported types are "
                      "DAY, HOUR, MONTH, and YEAR." % json.dumps(ptype))
    out = {"type": ptype}
    if tp.get("expirationMs") is not None:
        ms = int64_field(tp, "expirationMs", "table.time_partitioning")
        if ms <= 0:
            raise invalid("timePartitioning.expirationMs must be positive")
        out["expirationMs"] = str(ms)
    field = tp.get("field")
    if field is not None:
        f = top.get(str(field).lower())
        if f is None:
            raise invalid("The field specified for time partitioning can only be of type "
                          "TIMESTAMP, DATE or DATETIME. The type found is: null "
                          "(field %s not found in the schema)." % field)
        if f["mode"] == "REPEATED" or f["type"] not in ("TIMESTAMP", "DATE"):
            # The discovery document allows only top-level TIMESTAMP or DATE columns.
            raise invalid("The field specified for time partitioning must be a top-level "
                          "TIMESTAMP or DATE field; %s is %s %s." % (field, f["mode"], f["type"]))
        out["field"] = f["name"]
    rpf = tp.get("requirePartitionFilter")
    if rpf is not None and not isinstance(rpf, bool):
        raise invalid("Invalid value for timePartitioning.requirePartitionFilter")
    return out, bool(rpf)


def normalize_clustering(cl, top):
    if not isinstance(cl, dict):
        raise invalid("Invalid value at 'table.clustering'")
    check_fields(cl, {"fields"}, "table.clustering")
    fields = cl.get("fields") or []
    if not isinstance(fields, list) or not fields:
        raise invalid("Clustering fields must be a non-empty list")
    if len(fields) > 4:  # [mem] documented limit
        raise invalid("Too many clustering fields: %d, only 4 are allowed." % len(fields))
    out = []
    for name in fields:
        f = top.get(str(name).lower())
        if f is None:
            raise invalid("The field specified for clustering cannot be found in the schema. "
                          "Invalid field: %s." % name)
        std = bqtypes.standard_type(f["type"])
        if f["mode"] == "REPEATED" or std not in CLUSTERABLE:
            raise invalid("Field %s is of type %s%s which is not supported for clustering."
                          % (name, "REPEATED " if f["mode"] == "REPEATED" else "", f["type"]))
        if f["name"] in out:
            raise invalid("Duplicate clustering field %s" % name)
        out.append(f["name"])
    return out


# ------------------------------------------------------------------------------------------
# rows

class RowErrors(Exception):
    def __init__(self, items):
        super().__init__("row errors")
        self.items = items


def convert_row(table, data, ignore_unknown):
    """JSON row -> tuple of stored values in column order, or RowErrors."""
    errors = []
    known = table.col_index
    for k in data:
        if k.lower() not in known and not ignore_unknown:
            errors.append({"reason": "invalid", "location": k,
                           "message": "no such field: %s." % k})
    values = [None] * len(table.columns)
    lower_data = {}
    for k, v in data.items():
        lower_data.setdefault(k.lower(), v)
    for i, c in enumerate(table.columns):
        v = lower_data.get(c.name.lower())
        try:
            values[i] = _convert_value(c.name, c.std, c.repeated, c.required, c.fields, v,
                                       ignore_unknown)
        except bqtypes.RowError as e:
            errors.append({"reason": e.reason, "location": e.location, "message": e.message})
            continue
        # Parameterized STRING(L): BigQuery refuses a longer value row by row.
        limit = table.schema[i].get("maxLength")
        if limit is not None and c.std == "STRING" and not c.repeated \
                and isinstance(values[i], str) and len(values[i]) > int(limit):
            errors.append({"reason": "invalid", "location": c.name,
                           "message": "Field %s: STRING(%s) has maximum length %s but got a "
                                      "value with length %d" % (c.name, limit, limit,
                                                                len(values[i]))})
    if errors:
        raise RowErrors(errors)
    return tuple(values)


def _convert_value(location, std, repeated, required, fields, v, ignore_unknown, nested=False):
    if repeated:
        if v is None:
            return None if nested else "[]"
        if not isinstance(v, list):
            raise bqtypes.RowError(location, "Expected an array for repeated field %s."
                                   % location)
        items = []
        for j, item in enumerate(v):
            if item is None:
                raise bqtypes.RowError(location, "Array contains a null element.")
            items.append(_convert_value(location, std, False, False, fields, item,
                                        ignore_unknown, nested=True))
        return items if nested else json.dumps(items, separators=(",", ":"), ensure_ascii=False)
    if v is None:
        if required:
            raise bqtypes.RowError(location, "Missing required field: %s." % location)
        return None
    if isinstance(v, list):
        raise bqtypes.RowError(location, "Array specified for non-repeated field: %s."
                               % location)
    if std == "STRUCT":
        if not isinstance(v, dict):
            raise bqtypes.RowError(location, "This field: %s is not a record." % location)
        rec = {}
        known = {f["name"].lower(): f for f in fields}
        for k in v:
            if k.lower() not in known and not ignore_unknown:
                raise bqtypes.RowError("%s.%s" % (location, k), "no such field: %s." % k)
        lower = {k.lower(): val for k, val in v.items()}
        for f in fields:
            rec[f["name"]] = _convert_value("%s.%s" % (location, f["name"]), f["std"],
                                            f["repeated"], f["required"], f["fields"],
                                            lower.get(f["name"].lower()), ignore_unknown,
                                            nested=True)
        return rec if nested else json.dumps(rec, separators=(",", ":"), ensure_ascii=False)
    if isinstance(v, dict) and std != "JSON":
        raise bqtypes.RowError(location, "This field: %s is not a record." % location)
    return bqtypes.convert_scalar(std, v, location)


# ------------------------------------------------------------------------------------------
# query parameters

def parse_parameters(body):
    """-> (types: lower name -> std, values: lower name -> (std, stored value))."""
    params = body.get("queryParameters")
    mode = body.get("parameterMode")
    if isinstance(mode, str):
        mode = mode.upper()  # Google's Node.js client sends "named"; the service accepts it
    if params is None or params == []:
        if mode not in (None, "NAMED", "POSITIONAL"):
            raise invalid("Invalid parameterMode: %s" % mode)
        return {}, {}
    if not isinstance(params, list):
        raise invalid("Invalid value at 'query_request.query_parameters'")
    if mode == "POSITIONAL":
        raise invalid_query("Positional query parameters are not supported by the datos GCP "
                            "emulator")
    if mode != "NAMED":
        # Stricter than guessing: a request with parameters must say how they are bound.
        raise invalid_query("Query parameters were given but parameterMode is %s; set "
                            "parameterMode to NAMED" % (json.dumps(mode) if mode else "not set"))
    types, values = {}, {}
    for i, p in enumerate(params):
        if not isinstance(p, dict):
            raise invalid("Invalid value at 'query_request.query_parameters[%d]'" % i)
        check_fields(p, {"name", "parameterType", "parameterValue"},
                     "query_request.query_parameters[%d]" % i)
        name = p.get("name")
        if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise invalid_query("Invalid query parameter name: %s" % json.dumps(name))
        if name.lower() in types:
            raise invalid_query("Duplicate query parameter name %s" % name)
        ptype = p.get("parameterType")
        if not isinstance(ptype, dict) or not isinstance(ptype.get("type"), str):
            raise invalid_query("Query parameter %s has no parameterType.type" % name)
        t = ptype["type"].upper()
        if t in ("ARRAY", "STRUCT", "RANGE", "JSON", "GEOGRAPHY", "INTERVAL"):
            raise invalid_query("%s query parameters are not supported by the datos GCP "
                                "emulator" % t)
        std = bqtypes.standard_type(t)
        if std not in PARAM_TYPES:
            raise invalid_query("Invalid query parameter type %s for parameter %s"
                                % (ptype["type"], name))
        pv = p.get("parameterValue")
        raw = pv.get("value") if isinstance(pv, dict) else None
        if pv is not None and not isinstance(pv, dict):
            raise invalid("Invalid value at 'query_request.query_parameters[%d].parameter_value'"
                          % i)
        if raw is None:
            value = None
        else:
            if isinstance(raw, bool):
                raw = "true" if raw else "false"
            elif isinstance(raw, (int, float)):
                # Google's Node.js client sends INT64/FLOAT64 values as JSON numbers and the
                # service takes them.
                raw = json.dumps(raw)
            if not isinstance(raw, str):
                raise invalid("Invalid value at 'query_request.query_parameters[%d]."
                              "parameter_value.value' (TYPE_STRING), %s" % (i, json.dumps(raw)))
            value = param_value(std, raw, name)
        types[name.lower()] = std
        values[name.lower()] = (std, value)
    return types, values


def param_value(std, raw, name):
    try:
        if std == "STRING":
            return raw
        if std == "INT64":
            if not re.match(r"^\s*[+-]?\d+\s*$", raw):
                raise ValueError
            v = int(raw)
            if not -(1 << 63) <= v < (1 << 63):
                raise ValueError
            return v
        if std == "FLOAT64":
            return float(raw)
        if std == "BOOL":
            if raw.lower() not in ("true", "false"):
                raise ValueError
            return 1 if raw.lower() == "true" else 0
        if std == "TIMESTAMP":
            return bqtypes.parse_timestamp(raw)
        return bqtypes.convert_scalar(std, raw, name)
    except (ValueError, bqtypes.RowError):
        raise invalid_query("Invalid %s value for query parameter %s: %s"
                            % (std, name, raw)) from None
