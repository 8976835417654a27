"""BigQuery load jobs with uploaded NDJSON (docs/google-apis.md 2.6, 2.7, 2.9, 2.12).

- jobs.insert with media: multipart/related (`uploadType=multipart`) and the resumable
  protocol (`uploadType=resumable`: a session POST answered with `Location`, then PUTs of
  the bytes, whole or in `Content-Range` chunks answered 308 + `Range`, and probes);
  jobs.insert without media (`/jobs`) for the duplicate check only.
- The job timeline runs on the emulator clock: PENDING for `load_job_pending_seconds`,
  RUNNING for `load_job_running_seconds`, then DONE. The data is read, checked against the
  destination table's schema and committed (all rows at once, or none) when the job
  reaches DONE; `settle()` does that lazily at the start of every BigQuery request.
- Failures are DONE jobs with `status.errorResult` (HTTP 200), never HTTP errors: bad rows,
  a missing table under CREATE_NEVER, WRITE_EMPTY on a non-empty table, a schema that does
  not match the table's, the per-table daily load-job quota, or a forced failure from a
  `job_error` fault.
"""
import datetime
import hashlib
import json
import os
import re
import secrets
import sys
import traceback

from .bigquery import (DATASET_ID_RE, JOB_ID_RE, TABLE_ID_RE, RowErrors, bool_field,
                       check_fields, convert_row, invalid, new_job_id, normalize_clustering,
                       normalize_schema, normalize_time_partitioning, not_found)
from .errors import DEFAULT_MESSAGES, ApiError
from .http import Response, json_response
from .journal import write_atomic
from .state import Table, etag_of

UPLOAD = r"^/upload/bigquery/v2/projects/(?P<project>[^/]+)/jobs$"
META = r"^(?:/bigquery/v2)?/projects/(?P<project>[^/]+)/jobs$"
FILE_LOCATION = "file-00000000"  # how BigQuery names uploaded data in job errors
RESUMABLE_CHUNK = 256 * 1024
QUOTA_MESSAGE = ("Quota exceeded: Your table exceeded quota for imports or query appends per "
                 "table. For more information, see "
                 "https://cloud.google.com/bigquery/docs/troubleshoot-quotas")
# Texts for forced job failures ([mem]; clients switch on `reason`).
JOB_ERROR_MESSAGES = {
    "rateLimitExceeded": "Exceeded rate limits: too many table update operations for this "
                         "table. For more information, see "
                         "https://cloud.google.com/bigquery/docs/troubleshoot-quotas",
    "jobRateLimitExceeded": "Job exceeded rate limits: too many table update operations for "
                            "this table.",
    "jobBackendError": "The job encountered an error during execution. Retrying the job may "
                       "solve the problem.",
    "jobInternalError": "The job encountered an internal error during execution and was "
                        "unable to complete successfully.",
}

JOB_FIELDS = {"configuration", "etag", "id", "jobCreationReason", "jobReference", "kind",
              "principal_subject", "selfLink", "statistics", "status", "user_email"}
CONFIG_FIELDS = {"copy", "dryRun", "extract", "jobTimeoutMs", "jobType", "labels", "load",
                 "query", "reservation", "maxSlots"}
LOAD_FIELDS = {
    "allowJaggedRows", "allowQuotedNewlines", "autodetect", "clustering",
    "columnNameCharacterMap", "connectionProperties", "copyFilesOnly", "createDisposition",
    "createSession", "dateFormat", "datetimeFormat", "decimalTargetTypes",
    "destinationEncryptionConfiguration", "destinationTable", "destinationTableProperties",
    "encoding", "fieldDelimiter", "fileSetSpecType", "hivePartitioningOptions",
    "ignoreUnknownValues", "jsonExtension", "maxBadRecords", "nullMarker", "nullMarkers",
    "parquetOptions", "preserveAsciiControlCharacters", "projectionFields", "quote",
    "rangePartitioning", "referenceFileSchemaUri", "schema", "schemaInline",
    "schemaInlineFormat", "schemaUpdateOptions", "skipLeadingRows", "sourceColumnMatch",
    "sourceFormat", "sourceUris", "timeFormat", "timePartitioning", "timeZone",
    "timestampFormat", "useAvroLogicalTypes", "writeDisposition"}
CSV_ONLY = {"allowJaggedRows": "allowJaggedRows", "allowQuotedNewlines": "allowQuotedNewlines",
            "fieldDelimiter": "a field delimiter", "quote": "a quote character",
            "skipLeadingRows": "skipLeadingRows", "nullMarker": "a null marker",
            "nullMarkers": "null markers", "preserveAsciiControlCharacters":
            "preserveAsciiControlCharacters", "sourceColumnMatch": "sourceColumnMatch"}
LOAD_HANDLED = {"clustering", "createDisposition", "destinationTable", "encoding",
                "ignoreUnknownValues", "maxBadRecords", "schema", "sourceFormat", "sourceUris",
                "timePartitioning", "writeDisposition"}
WRITE_DISPOSITIONS = ("WRITE_APPEND", "WRITE_TRUNCATE", "WRITE_TRUNCATE_DATA", "WRITE_EMPTY")
CREATE_DISPOSITIONS = ("CREATE_IF_NEEDED", "CREATE_NEVER")
SOURCE_FORMATS = ("CSV", "NEWLINE_DELIMITED_JSON", "AVRO", "PARQUET", "ORC", "DATASTORE_BACKUP",
                  "ICEBERG")


def _empty(v):
    return v is None or v is False or v == "" or v == [] or v == {}


class LoadJob:
    """One load job. `config` is the job's configuration as jobs.get shows it."""

    def __init__(self, project, job_id, location, created_ms, pending_ms, running_ms, config,
                 input_bytes, forced=None):
        self.project = project
        self.job_id = job_id
        self.location = location
        self.created_ms = created_ms
        self.start_ms = created_ms + pending_ms
        self.end_ms = self.start_ms + running_ms
        self.config = config
        self.input_bytes = input_bytes
        self.forced = forced
        self.done = False
        self.error_result = None
        self.errors = None
        self.stats = None
        self.data = None
        self.etag = etag_of(project, job_id, created_ms)

    @property
    def load(self):
        return self.config["load"]

    @property
    def dest(self):
        d = self.load["destinationTable"]
        return d["projectId"], d["datasetId"], d["tableId"]

    def state(self, now_ms):
        if self.done:
            return "DONE"
        return "RUNNING" if now_ms >= self.start_ms else "PENDING"

    def fail(self, reason, message, location=None, errors=None):
        err = {"reason": reason, "message": message}
        if location:
            err["location"] = location
        self.error_result = err
        self.errors = [dict(err)] + list(errors or [])

    def dump(self):
        return {"project": self.project, "job_id": self.job_id, "location": self.location,
                "created_ms": self.created_ms, "start_ms": self.start_ms,
                "end_ms": self.end_ms, "config": self.config, "input_bytes": self.input_bytes,
                "forced": self.forced, "done": self.done, "error_result": self.error_result,
                "errors": self.errors, "stats": self.stats}

    @classmethod
    def restore(cls, d):
        j = cls(d["project"], d["job_id"], d["location"], d["created_ms"], 0, 0, d["config"],
                d["input_bytes"], d.get("forced"))
        j.start_ms, j.end_ms = d["start_ms"], d["end_ms"]
        j.done, j.error_result = d["done"], d.get("error_result")
        j.errors, j.stats = d.get("errors"), d.get("stats")
        return j

    def to_api(self, now_ms, base_url, email):
        state = self.state(now_ms)
        out = {"kind": "bigquery#job", "etag": self.etag,
               "id": "%s:%s.%s" % (self.project, self.location, self.job_id),
               "selfLink": "%s/bigquery/v2/projects/%s/jobs/%s?location=%s"
                           % (base_url, self.project, self.job_id, self.location),
               "user_email": email,
               "configuration": json.loads(json.dumps(self.config)),
               "jobReference": {"projectId": self.project, "jobId": self.job_id,
                                "location": self.location}}
        stats = {"creationTime": str(self.created_ms)}
        if state != "PENDING":
            stats["startTime"] = str(self.start_ms)
        if state == "DONE":
            stats["endTime"] = str(self.end_ms)
            if self.stats is not None:
                stats["load"] = dict(self.stats)
        out["statistics"] = stats
        status = {"state": state}
        if state == "DONE":
            if self.error_result is not None:
                status["errorResult"] = dict(self.error_result)
            if self.errors:
                status["errors"] = [dict(e) for e in self.errors]
        out["status"] = status
        out["principal_subject"] = "serviceAccount:" + email
        return out


class UploadSession:
    def __init__(self, upload_id, project, spec, expected, forced):
        self.upload_id = upload_id
        self.project = project
        self.spec = spec
        self.expected = expected  # X-Upload-Content-Length, or None
        self.forced = forced
        self.data = bytearray()
        self.result = None  # (status, job key or error) once finished


class LoadApi:
    def __init__(self, app):
        self.app = app
        self.state = app.bq
        self.uploads = {}

    def routes(self):
        def utype(value):
            return lambda q: q.get("uploadType") == value
        r = [
            ("POST", UPLOAD, "bigquery.jobs.insert.multipart", self.insert_multipart,
             utype("multipart")),
            ("POST", UPLOAD, "bigquery.jobs.insert.resumable", self.insert_resumable,
             utype("resumable")),
            ("PUT", UPLOAD, "bigquery.jobs.insert.resumable.upload", self.resumable_put,
             lambda q: "upload_id" in q),
            ("POST", UPLOAD, "bigquery.jobs.insert.upload", self.insert_bad_upload, None),
            ("POST", META, "bigquery.jobs.insert", self.insert_metadata, None),
        ]
        return [(m, p, e, h, "bigquery", q) for m, p, e, h, q in r]

    @property
    def settings(self):
        return self.app.settings

    def respond(self, req, obj, status=200, headers=None):
        pretty = req.query.get("prettyPrint", "true").lower() != "false"
        return json_response(obj, status, headers, pretty=pretty)

    def email(self):
        return self.app.trusted_keys[0].email

    # parsing the job resource -------------------------------------------------------------

    def parse_job(self, body, project):
        """Validate a Job resource for a load with media. -> spec dict."""
        if not isinstance(body, dict):
            raise invalid("Invalid JSON payload received. Expected an object.")
        check_fields(body, JOB_FIELDS, "job")
        ref = body.get("jobReference") or {}
        if not isinstance(ref, dict):
            raise invalid("Invalid value at 'job.job_reference'")
        check_fields(ref, {"projectId", "jobId", "location"}, "job.job_reference")
        if ref.get("projectId") not in (None, "", project):
            raise invalid("Job project %s does not match the project %s in the request URL"
                          % (ref["projectId"], project))
        job_id = ref.get("jobId")
        if job_id is not None and (not isinstance(job_id, str) or not JOB_ID_RE.match(job_id)):
            raise invalid('Invalid job ID "%s". Job IDs must be alphanumeric (plus underscores '
                          'and dashes) and must be at most 1024 characters long.' % job_id)
        location = ref.get("location")
        if location is not None and (not isinstance(location, str) or not location.strip()):
            raise ApiError(400, "Invalid location: %s" % json.dumps(location), "badRequest")
        cfg = body.get("configuration")
        if not isinstance(cfg, dict):
            raise invalid("Required parameter is missing: configuration")
        check_fields(cfg, CONFIG_FIELDS, "job.configuration")
        for k in ("query", "copy", "extract"):
            if cfg.get(k):
                raise ApiError(501, "%s jobs through jobs.insert are not supported by the datos "
                                    "GCP emulator" % k, "notImplemented")
        if cfg.get("dryRun"):
            raise ApiError(501, "dryRun load jobs are not supported by the datos GCP emulator",
                           "notImplemented")
        if cfg.get("jobType") not in (None, "LOAD"):
            raise invalid("Invalid jobType %s for a load configuration" % cfg["jobType"])
        load = cfg.get("load")
        if not isinstance(load, dict):
            raise invalid("Required parameter is missing: configuration.load")
        # Not a JobConfigurationLoad field, yet Google's Node.js client puts the table's
        # location there (table.load()) and BigQuery accepts it: ignored, never echoed.
        load = {k: v for k, v in load.items() if k != "location"}
        check_fields(load, LOAD_FIELDS, "job.configuration.load")
        fmt = load.get("sourceFormat") or "CSV"
        if fmt not in SOURCE_FORMATS:
            raise invalid("Invalid source format %s" % fmt)
        if fmt != "NEWLINE_DELIMITED_JSON":
            # BigQuery's default is CSV: a client that forgets sourceFormat lands here.
            raise ApiError(501, "sourceFormat %s is not supported by the datos GCP emulator "
                                "(only NEWLINE_DELIMITED_JSON)" % fmt, "notImplemented")
        for k, what in CSV_ONLY.items():
            if not _empty(load.get(k)):
                raise invalid("Only CSV imports may specify %s." % what)
        for k in sorted(set(load) - LOAD_HANDLED - set(CSV_ONLY)):
            if not _empty(load[k]):
                raise ApiError(501, "Load option %s is not supported by the datos GCP emulator"
                               % k, "notImplemented")
        if load.get("encoding") not in (None, "", "UTF-8"):
            raise ApiError(501, "Load encoding %s is not supported by the datos GCP emulator"
                           % load["encoding"], "notImplemented")
        dest = load.get("destinationTable")
        if not isinstance(dest, dict) or not dest.get("datasetId") or not dest.get("tableId"):
            raise invalid("Required parameter is missing: configuration.load.destinationTable")
        check_fields(dest, {"projectId", "datasetId", "tableId"},
                     "job.configuration.load.destination_table")
        dproject = dest.get("projectId") or project
        if not isinstance(dest["datasetId"], str) or not DATASET_ID_RE.match(dest["datasetId"]):
            raise invalid('Invalid dataset ID "%s".' % dest["datasetId"])
        table_id = dest["tableId"]
        if not isinstance(table_id, str) or "$" in table_id or not TABLE_ID_RE.match(table_id):
            if isinstance(table_id, str) and "$" in table_id:
                raise ApiError(501, "Partition decorators are not supported by the datos GCP "
                                    "emulator", "notImplemented")
            raise invalid('Invalid table ID "%s".' % table_id)
        wd = load.get("writeDisposition") or "WRITE_APPEND"
        if wd not in WRITE_DISPOSITIONS:
            raise invalid("Invalid value for writeDisposition: %s" % wd)
        cd = load.get("createDisposition") or "CREATE_IF_NEEDED"
        if cd not in CREATE_DISPOSITIONS:
            raise invalid("Invalid value for createDisposition: %s" % cd)
        max_bad = load.get("maxBadRecords", 0)
        if isinstance(max_bad, bool) or not isinstance(max_bad, (int, str)) or \
                (isinstance(max_bad, str) and not max_bad.strip().isdigit()) or int(max_bad) < 0:
            raise invalid("Invalid value at 'job.configuration.load.max_bad_records' "
                          "(TYPE_INT32), %s" % json.dumps(max_bad))
        ignore = bool_field(load, "ignoreUnknownValues", "job.configuration.load") or False
        schema = None
        if load.get("schema") is not None:
            schema = normalize_schema(load["schema"], "job.configuration.load.schema")
        top = {f["name"].lower(): f for f in schema or []}
        tp = cl = None
        if load.get("timePartitioning") is not None:
            tp, _ = normalize_time_partitioning(load["timePartitioning"], top)
        if load.get("clustering") is not None:
            cl = normalize_clustering(load["clustering"], top)
        labels = cfg.get("labels")
        if labels is not None and (not isinstance(labels, dict) or
                                   not all(isinstance(v, str) for v in labels.values())):
            raise invalid("Invalid value at 'job.configuration.labels'")
        echo = {k: v for k, v in load.items() if k != "sourceUris" or v}
        echo["destinationTable"] = {"projectId": dproject, "datasetId": dest["datasetId"],
                                    "tableId": table_id}
        echo["sourceFormat"] = fmt
        if schema is not None:
            echo["schema"] = {"fields": schema}
        if "maxBadRecords" in echo:
            echo["maxBadRecords"] = int(max_bad)
        config = {"load": echo, "jobType": "LOAD"}
        if labels:
            config["labels"] = dict(labels)
        return {"project": project, "job_id": job_id, "location": location,
                "config": config, "dest": (dproject, dest["datasetId"], table_id),
                "write": wd, "create": cd, "max_bad": int(max_bad), "ignore": ignore,
                "schema": schema, "tp": tp, "cl": cl,
                "source_uris": load.get("sourceUris") or []}

    def check_new_job(self, spec):
        """Duplicate id and dataset checks shared by every jobs.insert path; fills in the
        job id and location. Call with the state lock held."""
        st = self.state
        project = spec["project"]
        if spec["job_id"] is None:
            spec["job_id"] = new_job_id()
        prior = st.get_job(project, spec["job_id"])
        if prior is not None:
            # Any earlier job, failed ones included, keeps its id (docs/google-apis.md 2.6).
            raise ApiError(409, "Already Exists: Job %s:%s.%s"
                           % (project, prior.location, spec["job_id"]), "duplicate")
        dp, dd, _ = spec["dest"]
        ds = st.datasets.get((dp, dd))
        loc = spec["location"]
        if ds is None or (loc and loc.lower() != ds.location.lower()):
            raise not_found("Not found: Dataset %s:%s was not found in location %s"
                            % (dp, dd, loc or "US"))
        spec["location"] = ds.location

    # jobs.insert paths --------------------------------------------------------------------

    def insert_multipart(self, req, project):
        meta, data = parse_multipart(req)
        try:
            body = json.loads(meta.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise invalid("Invalid JSON payload received. %s" % e) from None
        spec = self.parse_job(body, project)
        if spec["source_uris"]:
            raise invalid("Source URIs cannot be given with uploaded data.")
        with self.state.lock:
            job = self.create_job(spec, data, req.forced_job_error)
            return self.respond(req, self.render(job))

    def insert_metadata(self, req, project):
        spec = self.parse_job(req.json(), project)
        with self.state.lock:
            self.check_new_job(spec)
        if spec["source_uris"]:
            raise ApiError(501, "Loading from sourceUris (Cloud Storage) is not supported by "
                                "the datos GCP emulator; upload the data with "
                                "/upload/bigquery/v2/.../jobs", "notImplemented")
        raise invalid("Load configuration must specify at least one source URI")

    def insert_bad_upload(self, req, project):
        ut = req.query.get("uploadType")
        if ut is None:
            raise invalid("Upload requests must include an uploadType URL parameter and a URL "
                          "path beginning with /upload/")
        raise invalid("Invalid upload type %s for a job insert: use multipart or resumable"
                      % json.dumps(ut))

    def insert_resumable(self, req, project):
        spec = self.parse_job(req.json(), project)
        if spec["source_uris"]:
            raise invalid("Source URIs cannot be given with uploaded data.")
        expected = req.header("X-Upload-Content-Length")
        if expected is not None:
            if not expected.strip().isdigit():
                raise invalid("Invalid X-Upload-Content-Length: %s" % expected)
            expected = int(expected)
        with self.state.lock:
            self.check_new_job(dict(spec))  # fail fast; checked again when the data is in
            upload_id = "ADPycd" + secrets.token_urlsafe(48)
            self.uploads[upload_id] = UploadSession(upload_id, project, spec, expected,
                                                    req.forced_job_error)
            if len(self.uploads) > 1000:
                self.uploads.pop(next(iter(self.uploads)))
        location = "%s/upload/bigquery/v2/projects/%s/jobs?uploadType=resumable&upload_id=%s" \
                   % (self.app.base_url, project, upload_id)
        return Response(200, b"", None, {"Location": location,
                                         "X-GUploader-UploadID": upload_id})

    def resumable_put(self, req, project):
        uid = req.query.get("upload_id")
        with self.state.lock:
            s = self.uploads.get(uid)
            if s is None or s.project != project:
                raise not_found("Not found: upload session %s" % uid)
            if s.result is not None:
                return self.finished(req, s)
            cr = req.header("Content-Range")
            body = req.body
            if cr is None:
                if s.data:
                    raise invalid("A Content-Range header is required to continue an upload "
                                  "that has received %d bytes." % len(s.data))
                s.data += body
                return self.finish(req, s)
            m = re.match(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*$", cr)
            if not m:
                raise invalid("Invalid Content-Range header: %s" % cr)
            total = None if m.group(3) == "*" else int(m.group(3))
            if m.group(1) is None:  # status probe, or the final empty request
                if body:
                    raise invalid("Content-Range %s announces no bytes but the request has "
                                  "%d." % (cr, len(body)))
                if total is not None and total == len(s.data):
                    return self.finish(req, s)
                if total is not None and total < len(s.data):
                    raise invalid("Content-Range total %d is less than the %d bytes already "
                                  "received." % (total, len(s.data)))
                return self.incomplete(s)
            first, last = int(m.group(1)), int(m.group(2))
            if last < first or len(body) != last - first + 1 or \
                    (total is not None and last >= total):
                raise invalid("Content-Range %s does not match the %d bytes sent."
                              % (cr, len(body)))
            if first > len(s.data):
                raise invalid("Content-Range starts at byte %d but only %d bytes were received "
                              "so far: resume from the Range of a status request."
                              % (first, len(s.data)))
            final = total is not None and last + 1 == total
            if not final and len(body) < RESUMABLE_CHUNK:
                raise invalid("Invalid request. The number of bytes uploaded is required to be "
                              "equal or greater than %d, except for the final request (it's "
                              "recommended to be the exact multiple of %d). The received "
                              "request contained %d bytes, which does not meet this "
                              "requirement." % (RESUMABLE_CHUNK, RESUMABLE_CHUNK, len(body)))
            new = bytes(body[len(s.data) - first:]) if last >= len(s.data) else b""
            if final:
                s.data += new
                return self.finish(req, s)
            # Only whole 256 KiB units of a non-final chunk are kept; the client resends the
            # rest from the Range it is told (the documented resumable behaviour).
            end = len(s.data) + len(new)
            s.data += new[:len(new) - end % RESUMABLE_CHUNK] if end % RESUMABLE_CHUNK else new
            return self.incomplete(s)

    def incomplete(self, s):
        headers = {"X-GUploader-UploadID": s.upload_id}
        if s.data:
            headers["Range"] = "bytes=0-%d" % (len(s.data) - 1)
        return Response(308, b"", "text/plain; charset=utf-8", headers)

    def finish(self, req, s):
        if s.expected is not None and s.expected != len(s.data):
            raise invalid("The upload has %d bytes but X-Upload-Content-Length announced %d."
                          % (len(s.data), s.expected))
        data = bytes(s.data)
        s.data = bytearray()
        try:
            job = self.create_job(dict(s.spec), data, s.forced or req.forced_job_error)
        except ApiError as e:
            s.result = ("error", e)
            raise
        s.result = ("job", (job.project, job.job_id))
        return self.respond(req, self.render(job))

    def finished(self, req, s):
        kind, what = s.result
        if kind == "error":
            raise what
        return self.respond(req, self.render(self.state.get_job(*what)))

    # the job ------------------------------------------------------------------------------

    def create_job(self, spec, data, forced):
        """Create a load job (state lock held). It is DONE at once unless the settings give
        it pending/running time."""
        self.check_new_job(spec)
        st = self.state
        now_ms = self.app.clock.now_ms()
        pending = int(float(self.settings["load_job_pending_seconds"]) * 1000)
        running = int(float(self.settings["load_job_running_seconds"]) * 1000)
        job = LoadJob(spec["project"], spec["job_id"], spec["location"], now_ms, pending,
                      running, spec["config"], len(data), list(forced) if forced else None)
        limit = int(self.settings["load_jobs_per_table_per_day"])
        key = spec["dest"] + (utc_day(now_ms),)
        used = st.load_counts.get(key, 0)
        if used >= limit:
            # Refused before it runs; such attempts do not use up more quota.
            job.start_ms = job.end_ms = now_ms
            job.fail("quotaExceeded", QUOTA_MESSAGE, "load_job_per_table.long")
            job.done = True
        else:
            st.load_counts[key] = used + 1
            job.data = data
        st.add_load_job(job)
        if not job.done and st.data_file and job.end_ms > now_ms:
            write_atomic(self.data_path(job), data)
        self.settle(save=False)
        st.save()
        return job

    def data_path(self, job):
        name = hashlib.sha1(("%s:%s" % (job.project, job.job_id)).encode()).hexdigest()
        return os.path.join(os.path.dirname(self.state.data_file), "load-%s.ndjson" % name)

    def restore_pending(self):
        """After a restart: reload the data of jobs that had not reached DONE."""
        for job in self.state.pending_loads:
            try:
                with open(self.data_path(job), "rb") as f:
                    job.data = f.read()
            except OSError:
                job.data = None

    def settle(self, save=True):
        """Run every load job whose DONE time has come, in the order they were created."""
        st = self.state
        if not st.pending_loads:
            return
        now_ms = self.app.clock.now_ms()
        with st.lock:
            due = [j for j in st.pending_loads if j.end_ms <= now_ms]
            if not due:
                return
            for job in due:
                st.pending_loads.remove(job)
                try:
                    self.run(job)
                except Exception:  # an emulator bug must still end the job, visibly
                    sys.stderr.write("datos-gcp-emulator: load job %s failed inside the "
                                     "emulator\n%s" % (job.job_id, traceback.format_exc()))
                    job.fail("internalError", "An internal error occurred in the datos GCP "
                                              "emulator while running this load job.")
                job.done = True
                job.data = None
                if st.data_file:
                    try:
                        os.unlink(self.data_path(job))
                    except OSError:
                        pass
            if save:
                st.save()

    def run(self, job):
        st = self.state
        if job.forced:
            reason, message = job.forced
            job.fail(reason, message or JOB_ERROR_MESSAGES.get(reason) or
                     DEFAULT_MESSAGES.get(reason) or "Injected job failure")
            return
        if job.data is None:
            job.fail("backendError", "The uploaded data of this job was lost when the datos "
                                     "GCP emulator restarted. Retrying may solve the problem.")
            return
        load = job.load
        p, d, t = job.dest
        if (p, d) not in st.datasets:
            job.fail("notFound", "Not found: Dataset %s:%s" % (p, d))
            return
        table = st.tables.get((p, d, t))
        schema = load["schema"]["fields"] if load.get("schema") else None
        if table is None:
            if load.get("createDisposition") == "CREATE_NEVER":
                job.fail("notFound", "Not found: Table %s:%s.%s" % (p, d, t))
                return
            if not schema:
                job.fail("invalid", "No schema specified on job or table.")
                return
            top = {f["name"].lower(): f for f in schema}
            tp = load.get("timePartitioning")
            cl = load.get("clustering")
            table = Table(p, d, t, schema,
                          normalize_time_partitioning(tp, top)[0] if tp else None,
                          normalize_clustering(cl, top) if cl else None,
                          False, self.app.clock.now_ms(), {}, st.next_seq())
            new_table = True
        else:
            new_table = False
            if schema:
                problem = schema_mismatch(table, schema)
                if problem:
                    job.fail("invalid", "Provided Schema does not match Table %s:%s.%s. %s"
                             % (p, d, t, problem))
                    return
        wd = load.get("writeDisposition") or "WRITE_APPEND"
        if wd == "WRITE_EMPTY" and not new_table and table.total_rows:
            job.fail("duplicate", "Already Exists: Table %s:%s.%s" % (p, d, t))
            return
        max_bad = int(load.get("maxBadRecords", 0))
        rows, bad, read, gave_up = read_ndjson(table, job.data, max_bad,
                                              bool(load.get("ignoreUnknownValues")))
        stats = {"inputFiles": "1", "inputFileBytes": str(job.input_bytes),
                 "outputRows": "0", "outputBytes": "0", "badRecords": str(len(bad))}
        job.stats = stats
        if gave_up:
            job.fail("invalid", "Error while reading data, error message: JSON table "
                                "encountered too many errors, giving up. Rows: %d; errors: %d. "
                                "Please look into the errors[] collection for more details."
                     % (read, len(bad)), FILE_LOCATION, bad)
            return
        if new_table:
            st.add_table(table, save=False)
        elif wd in ("WRITE_TRUNCATE", "WRITE_TRUNCATE_DATA"):
            st.truncate_table(table)
        written = 0
        if rows and table.columns:
            now_us = self.app.clock.now_us()
            written = st._insert_rows(table, rows, [now_us] * len(rows), save=False)
        else:
            table.modified_ms = self.app.clock.now_ms()
        stats["outputRows"] = str(len(rows))
        stats["outputBytes"] = str(written)
        if bad:
            job.errors = bad  # tolerated under maxBadRecords: listed, no errorResult

    def render(self, job):
        return job.to_api(self.app.clock.now_ms(), self.app.base_url, self.email())


def utc_day(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc).strftime(
        "%Y-%m-%d")


def schema_mismatch(table, fields):
    """Why a load's schema differs from the table's (None when it does not)."""
    have = {f["name"].lower(): f for f in table.schema}
    given = {f["name"].lower(): f for f in fields}
    for k, f in given.items():
        if k not in have:
            return "Cannot add fields (field: %s)" % f["name"]
    for k, f in have.items():
        g = given.get(k)
        if g is None:
            return "Field %s is missing in new schema" % f["name"]
        if g["type"] != f["type"]:
            return "Field %s has changed type from %s to %s" % (f["name"], f["type"], g["type"])
        if g["mode"] != f["mode"]:
            return "Field %s has changed mode from %s to %s" % (f["name"], f["mode"], g["mode"])
    return None


def _row_error(pos, detail):
    return {"reason": "invalid", "location": FILE_LOCATION,
            "message": "Error while reading data, error message: JSON parsing error in row "
                       "starting at position %d: %s" % (pos, detail)}


def read_ndjson(table, data, max_bad, ignore_unknown):
    """-> (good rows as stored tuples, per-row errors, rows read, gave up?). Reading stops
    at the first bad row beyond max_bad, as BigQuery gives up."""
    rows, bad = [], []
    read = 0
    pos = 0
    for line in data.split(b"\n"):
        start = pos
        pos += len(line) + 1
        if not line.strip():
            continue
        read += 1
        detail = None
        try:
            obj = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            detail = "Invalid UTF-8 in the row."
        except ValueError as e:
            detail = "Parser terminated before end of string. %s" % e
        else:
            if not isinstance(obj, dict):
                detail = "Expected a JSON object, found %s." % type(obj).__name__
            else:
                try:
                    rows.append(convert_row(table, obj, ignore_unknown))
                except RowErrors as e:
                    item = e.items[0]
                    msg = item["message"]
                    if msg.startswith("no such field"):
                        msg = "No such field: %s." % item["location"]
                    elif item.get("location") and "Field:" not in msg:
                        msg = "%s Field: %s" % (msg, item["location"])
                    detail = msg
        if detail is not None:
            bad.append(_row_error(start, detail))
            if len(bad) > max_bad:
                return [], bad, read, True
    return rows, bad, read, False


def parse_multipart(req):
    """multipart/related (RFC 2046) -> (JSON part bytes, data part bytes)."""
    ctype = req.header("Content-Type") or ""
    m = re.match(r"^\s*multipart/related\s*;(.*)$", ctype, re.I)
    if not m:
        raise invalid("Invalid multipart request: Content-Type must be multipart/related with a "
                      "boundary, got %s" % json.dumps(ctype))
    bm = re.search(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', m.group(1), re.I)
    if not bm:
        raise invalid("Invalid multipart request: no boundary in Content-Type")
    boundary = (bm.group(1) or bm.group(2)).encode("latin-1")
    body = req.body
    delim = b"--" + boundary
    if body.startswith(delim):
        pos = 0
    else:
        pos = body.find(b"\r\n" + delim)
        if pos < 0:
            raise invalid("Invalid multipart request: the boundary never occurs in the body")
        pos += 2
    parts = []
    while True:
        pos += len(delim)
        if body[pos:pos + 2] == b"--":
            break  # the close delimiter
        eol = body.find(b"\r\n", pos)
        if eol < 0 or body[pos:eol].strip(b" \t"):
            raise invalid("Invalid multipart request: a boundary line must end with CRLF")
        head_end = body.find(b"\r\n\r\n", eol)
        if body[eol:eol + 4] == b"\r\n\r\n":
            head_end = eol
        if head_end < 0:
            raise invalid("Invalid multipart request: part headers must end with an empty line")
        headers = body[eol + 2:head_end].decode("latin-1") if head_end > eol else ""
        content_start = head_end + 4
        nxt = body.find(b"\r\n" + delim, content_start)
        if nxt < 0:
            raise invalid("Invalid multipart request: missing the closing boundary")
        parts.append((headers, body[content_start:nxt]))
        pos = nxt + 2
    if len(parts) != 2:
        raise invalid("Invalid multipart request: expected 2 parts (job JSON, then data), "
                      "found %d" % len(parts))
    first_type = ""
    for line in parts[0][0].split("\r\n"):
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-type":
            first_type = v.strip().lower()
    if not first_type.startswith("application/json"):
        raise invalid("Invalid multipart request: the first part must be application/json, "
                      "got %s" % json.dumps(first_type))
    return parts[0][1], parts[1][1]

