"""Start and drive the datos GCP emulator (emulator/server.py) from tests and tools.

Standard library only (urllib), so `make run` can use it as well as pytest:

    emu = Emulator("/work/main/build/test-tmp/emu")
    emu.start()
    emu.create_dataset("latam_dataset")
    emu.create_datos_table()
    emu.insert_rows([{"id": "1", "contenido": "hola", "timestamp": "2024-01-14T14:00:00Z"}])
    emu.create_topic("datos-topic"); emu.create_subscription("datos-subscription", "datos-topic")
    emu.publish("datos-topic", [b'{"id": "1"}', {"data": b"x", "attributes": {"k": "v"}}])
    got = emu.pull("datos-subscription"); emu.ack("datos-subscription", [m["ackId"] for m in got])
    emu.load_rows([{"id": "2", "timestamp": "2024-01-14T14:00:00Z"}], job_id="load_1")
    emu.table_rows()
    ...
    emu.stop()

Convenience methods go through the emulator's public REST API, exactly like a client would.
"""
import base64
import json
import os
import uuid
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

EMULATOR_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(EMULATOR_DIR)
SERVER = os.path.join(EMULATOR_DIR, "server.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

DATOS_SCHEMA = [
    {"name": "id", "type": "STRING", "mode": "REQUIRED"},
    {"name": "contenido", "type": "STRING", "mode": "NULLABLE"},
    {"name": "timestamp", "type": "TIMESTAMP", "mode": "REQUIRED"},
    {"name": "message_id", "type": "STRING", "mode": "NULLABLE"},
    {"name": "publish_time", "type": "TIMESTAMP", "mode": "NULLABLE"},
]
INSERT_CHUNK_BYTES = 9 * 1024 * 1024  # under insertAll's 10 MB request limit
INSERT_CHUNK_ROWS = 10_000
PUBLISH_BATCH = 1000  # Pub/Sub: at most 1,000 messages ...
PUBLISH_BATCH_BYTES = 9_000_000  # ... and 10,000,000 bytes per publish request
ACK_BATCH = 2500  # what Google's clients send per acknowledge / modifyAckDeadline
BIGQUERY_AUD = "https://bigquery.googleapis.com/"
PUBSUB_AUD = "https://pubsub.googleapis.com/"


def query_body(sql, params=None, **extra):
    """A jobs.query body in Standard SQL; params: {name: (type, value or None)}."""
    body = {"query": sql, "useLegacySql": False}
    if params:
        body["parameterMode"] = "NAMED"
        body["queryParameters"] = [
            {"name": k, "parameterType": {"type": t},
             "parameterValue": {} if v is None else {"value": str(v)}}
            for k, (t, v) in params.items()]
    body.update(extra)
    return body


class EmulatorError(RuntimeError):
    pass


class Emulator:
    def __init__(self, workdir, require_auth=False, project="datos-local", extra_args=(),
                 port=0, tls=None):
        """port=0 picks a free port; a fixed port (e.g. 9050 for `make run`) may be given.
        tls=(cert_file, key_file, ca_file) serves https, trusted through ca_file."""
        self.workdir = os.path.abspath(workdir)
        self.requested_port = int(port)
        self.tls = tls
        self.scheme = "https" if tls else "http"
        self._ssl = ssl.create_default_context(cafile=tls[2]) if tls else None
        self.require_auth = require_auth
        self.project = project
        self.extra_args = list(extra_args)
        self.proc = None
        self._jwt = {}
        self.port = None
        self.base_url = None
        self.key_file = os.path.join(self.workdir, "service-account.json")
        self.port_file = os.path.join(self.workdir, "emulator.port")
        self.stdout_path = os.path.join(self.workdir, "emulator.stdout")
        self.stderr_path = os.path.join(self.workdir, "emulator.stderr")

    @classmethod
    def attach(cls, base_url, project="datos-local"):
        """An emulator some other process runs (a container of docker/compose.yaml): the
        same REST helpers, no start or stop."""
        emu = cls(os.devnull, project=project)
        emu.base_url = base_url.rstrip("/")
        emu.port = urllib.parse.urlsplit(emu.base_url).port
        return emu

    # process ------------------------------------------------------------------------------

    def start(self, timeout=120):
        os.makedirs(self.workdir, exist_ok=True)
        for p in (self.port_file,):
            if os.path.exists(p):
                os.unlink(p)
        cmd = [PYTHON, SERVER, "--port", str(self.requested_port), "--port-file", self.port_file,
               "--project", self.project]
        if "--service-account-key" not in self.extra_args:
            cmd += ["--write-service-account-key", self.key_file]
        if self.require_auth:
            cmd.append("--require-auth")
        if self.tls:
            cmd += ["--tls-cert", self.tls[0], "--tls-key", self.tls[1]]
        cmd += self.extra_args
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL, cwd=REPO)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise EmulatorError("emulator exited with %s:\n%s"
                                    % (self.proc.returncode, self._stderr()))
            if os.path.exists(self.port_file):
                try:
                    with open(self.port_file) as f:
                        self.port = int(f.read().strip())
                except ValueError:
                    self.port = None
                if self.port:
                    self.base_url = "%s://127.0.0.1:%d" % (self.scheme, self.port)
                    try:
                        if self._call("GET", "/_emulator/health", timeout=2) == {"status": "ok"}:
                            return self
                    except (OSError, EmulatorError):
                        pass
            time.sleep(0.05)
        self.stop()
        raise EmulatorError("emulator did not become healthy in %ss:\n%s"
                            % (timeout, self._stderr()))

    def _stderr(self):
        try:
            with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f is not None:
                f.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # raw HTTP -----------------------------------------------------------------------------

    def _call(self, method, path, body=None, timeout=30, expect=(200,), token=None):
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        status, _, raw = self._raw(method, path, data, headers, timeout, expect, token)
        return json.loads(raw) if raw else None

    def _raw(self, method, path, data=None, headers=None, timeout=30, expect=(200,),
             token=None):
        """One HTTP exchange -> (status, headers, body bytes). `path` may be a full URL."""
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = "Bearer " + token
        url = path if "://" in path else self.base_url + path
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl) as resp:
                status, hdrs, raw = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            status, hdrs, raw = e.code, e.headers, e.read()
        if status not in expect:
            raise EmulatorError("%s %s -> %s: %s" % (method, path, status,
                                                     raw.decode("utf-8", "replace")))
        return status, hdrs, raw

    # control API --------------------------------------------------------------------------

    def reset(self):
        self._call("POST", "/_emulator/reset", {})

    def counters(self):
        return self._call("GET", "/_emulator/counters")["counters"]

    def count(self, endpoint):
        return self.counters().get(endpoint, 0)

    def requests(self, endpoint=None):
        q = "?endpoint=" + urllib.parse.quote(endpoint) if endpoint else ""
        return self._call("GET", "/_emulator/requests" + q)["requests"]

    def query_bytes(self):
        """Query jobs run and their bytes processed and billed since the last clear:
        {"jobs": N, "processed": B, "billed": B}."""
        got = self._call("GET", "/_emulator/counters").get("query_bytes", {})
        return {k: got.get(k, 0) for k in ("jobs", "processed", "billed")}

    def clear_counters(self):
        self._call("DELETE", "/_emulator/counters")

    def add_fault(self, **spec):
        return self._call("POST", "/_emulator/faults", spec)["id"]

    def faults(self):
        return self._call("GET", "/_emulator/faults")["faults"]

    def fault(self, fault_id):
        """One fault's description (a hold fault's even once used up)."""
        return self._call("GET", "/_emulator/faults/" + fault_id)

    def release_fault(self, fault_id):
        """Lets the requests a hold fault holds go on (and later ones pass)."""
        self._call("POST", "/_emulator/faults/%s/release" % fault_id, {})

    def clear_faults(self):
        self._call("DELETE", "/_emulator/faults")

    def release_held(self):
        """Releases and retires every hold fault: the requests they hold go on at once.
        Returns how many requests a fault is still being applied to."""
        return self._call("POST", "/_emulator/faults/release", {})["applying"]

    def applying(self):
        """How many requests a fault is being applied to right now (held, delayed, or
        still being answered after)."""
        return self._call("GET", "/_emulator/faults")["applying"]

    def settle_faults(self, timeout=60):
        """Releases every held request and waits until each request a fault was applied
        to has been answered, so that what it does lands before the test goes on."""
        deadline = time.time() + timeout
        while self.release_held():
            if time.time() > deadline:
                raise EmulatorError("requests still held by faults after %ss" % timeout)
            time.sleep(0.02)

    def now(self):
        return self._call("GET", "/_emulator/clock")["now"]

    def advance_clock(self, seconds):
        return self._call("POST", "/_emulator/clock", {"advance": seconds})["now"]

    def set_clock(self, epoch):
        return self._call("POST", "/_emulator/clock", {"set": epoch})["now"]

    def freeze_clock(self, frozen=True):
        """Stops the emulator clock (it moves only when advanced or set), or with False
        lets it run on from where it stands."""
        return self._call("POST", "/_emulator/clock", {"freeze": frozen})["now"]

    def configure(self, **settings):
        return self._call("POST", "/_emulator/config", settings)

    def service_account(self):
        return self._call("GET", "/_emulator/service-account")

    def authorized_user(self):
        """application_default_credentials.json contents for the emulator's authorized user
        (refresh-token grant at this emulator's /token)."""
        return self._call("GET", "/_emulator/authorized-user")

    def write_authorized_user(self, path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.authorized_user(), f, indent=2)
        return path

    def revoke_authorized_user(self):
        return self._call("POST", "/_emulator/authorized-user/revoke", {})

    def subscription_stats(self, subscription, messages=False):
        """Backlog of a subscription: backlog, ready, outstanding, delayed and counters
        (published, delivered, acked, dead_lettered, expired, redelivered)."""
        path = "/_emulator/pubsub/projects/%s/subscriptions/%s" % (self.project, subscription)
        return self._call("GET", path + ("/messages" if messages else ""))

    def jobs(self):
        return self._call("GET", "/_emulator/bigquery/jobs")["jobs"]

    def load_counters(self):
        return self._call("GET", "/_emulator/bigquery/load-counters")

    def set_load_counter(self, table, count, day=None):
        body = {"table": table, "count": count}
        if day:
            body["day"] = day
        return self._call("POST", "/_emulator/bigquery/load-counters", body)

    # convenience through the public REST API ----------------------------------------------

    def _api(self, method, path, body=None, expect=(200,)):
        """A BigQuery call; with auth required it carries a self-signed JWT. The deadline
        is for a busy machine: a page of 100,000 rows can take a minute there."""
        return self._call(method, "/bigquery/v2" + path, body, timeout=180, expect=expect,
                          token=self._token())

    def _pubsub(self, method, path, body=None, expect=(200,), timeout=60):
        """A Pub/Sub call (`path` after /v1); with auth required it carries a self-signed
        JWT with the Pub/Sub audience."""
        return self._call(method, "/v1" + path, body, timeout=timeout, expect=expect,
                          token=self._token(PUBSUB_AUD))

    def _token(self, audience=BIGQUERY_AUD):
        """None when auth is off; else a self-signed JWT (docs/google-apis.md 3.3) made with the trusted
        key, so seeding never shows up in the oauth2/metadata counters tests look at."""
        cfg = self._call("GET", "/_emulator/config")
        if not cfg.get("require_auth"):
            return None
        now = int(time.time())
        cached = self._jwt.get(audience)
        if cached and cached[1] > now + 60:
            return cached[0]
        from gcpemu import keys  # the emulator's own stdlib RSA helpers
        info = self.service_account()
        n, _, d = keys.rsa_private_numbers_from_pem(info["private_key"])
        header = {"alg": "RS256", "typ": "JWT", "kid": info["private_key_id"]}
        claims = {"iss": info["client_email"], "sub": info["client_email"],
                  "aud": audience, "iat": now, "exp": now + 3600}
        si = (keys.b64url_encode(json.dumps(header).encode()) + "." +
              keys.b64url_encode(json.dumps(claims).encode()))
        jwt = si + "." + keys.b64url_encode(keys.rs256_sign(n, d, si.encode("ascii")))
        self._jwt[audience] = (jwt, now + 3600)
        return jwt

    def create_dataset(self, dataset, location="southamerica-east1"):
        return self._api("POST", "/projects/%s/datasets" % self.project,
                         {"datasetReference": {"projectId": self.project, "datasetId": dataset},
                          "location": location})

    def create_datos_table(self, dataset="latam_dataset", table="datos", loader_columns=True):
        """The product's table; loader_columns=False makes the three-column table of the
        system datos replaces (no message_id, no publish_time)."""
        fields = DATOS_SCHEMA if loader_columns else DATOS_SCHEMA[:3]
        return self._api("POST", "/projects/%s/datasets/%s/tables" % (self.project, dataset),
                         {"tableReference": {"projectId": self.project, "datasetId": dataset,
                                             "tableId": table},
                          "schema": {"fields": fields},
                          "timePartitioning": {"type": "DAY", "field": "timestamp"},
                          "clustering": {"fields": ["id"]}})

    def insert_rows(self, rows, dataset="latam_dataset", table="datos"):
        """Stream `rows` (dicts) with insertAll in requests under 10 MB; assert no errors."""
        path = "/projects/%s/datasets/%s/tables/%s/insertAll" % (self.project, dataset, table)
        chunk, size = [], 0
        for row in rows:
            item = {"json": row}
            n = len(json.dumps(item)) + 1
            if chunk and (size + n > INSERT_CHUNK_BYTES or len(chunk) >= INSERT_CHUNK_ROWS):
                self._insert_chunk(path, chunk)
                chunk, size = [], 0
            chunk.append(item)
            size += n
        if chunk:
            self._insert_chunk(path, chunk)

    def _insert_chunk(self, path, chunk):
        resp = self._api("POST", path, {"rows": chunk})
        assert not resp.get("insertErrors"), "insertAll errors: %s" % resp["insertErrors"][:5]

    def query(self, sql, params=None, **extra):
        """Run a Standard SQL query with jobs.query; params: {name: (type, value or None)}."""
        return self._api("POST", "/projects/%s/queries" % self.project,
                         query_body(sql, params, **extra))

    # BigQuery load jobs and readback ------------------------------------------------------

    def get_job(self, job_id, location=None):
        q = "?location=" + urllib.parse.quote(location) if location else ""
        return self._api("GET", "/projects/%s/jobs/%s%s" % (self.project, job_id, q))

    def load_rows(self, rows, dataset="latam_dataset", table="datos", job_id=None,
                  upload="multipart", chunk_size=None, location=None, expect=(200,),
                  **load_config):
        """A load job (jobs.insert with media) of NDJSON: `rows` are dicts or the raw bytes.
        upload: "multipart" or "resumable" (in `chunk_size`-byte PUTs when given, a multiple
        of 256 KiB). Extra keyword arguments go into configuration.load (writeDisposition,
        maxBadRecords, schema, ...). Returns the job resource jobs.insert answered."""
        data = rows if isinstance(rows, bytes) else ndjson(rows)
        load = {"destinationTable": {"projectId": self.project, "datasetId": dataset,
                                     "tableId": table},
                "sourceFormat": "NEWLINE_DELIMITED_JSON"}
        load.update(load_config)
        job = {"configuration": {"load": load}, "jobReference": {"projectId": self.project}}
        if job_id:
            job["jobReference"]["jobId"] = job_id
        if location:
            job["jobReference"]["location"] = location
        path = "/upload/bigquery/v2/projects/%s/jobs" % self.project
        token = self._token()
        meta = json.dumps(job).encode("utf-8")
        if upload == "multipart":
            boundary = "datos_" + uuid.uuid4().hex
            while boundary.encode() in data:
                boundary = "datos_" + uuid.uuid4().hex
            b = boundary.encode()
            body = (b"--" + b + b"\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n" +
                    meta + b"\r\n--" + b + b"\r\nContent-Type: application/octet-stream\r\n\r\n" +
                    data + b"\r\n--" + b + b"--\r\n")
            _, _, raw = self._raw("POST", path + "?uploadType=multipart", body,
                                  {"Content-Type": 'multipart/related; boundary="%s"' % boundary},
                                  120, expect, token)
            return json.loads(raw)
        status, hdrs, raw = self._raw(
            "POST", path + "?uploadType=resumable", meta,
            {"Content-Type": "application/json; charset=UTF-8",
             "X-Upload-Content-Type": "application/octet-stream",
             "X-Upload-Content-Length": str(len(data))}, 60, expect, token)
        if status != 200:
            return json.loads(raw)
        session = hdrs["Location"]
        if not chunk_size:
            _, _, raw = self._raw("PUT", session, data, {}, 120, expect, token)
            return json.loads(raw)
        sent = 0
        while True:
            chunk = data[sent:sent + chunk_size]
            last = sent + len(chunk) >= len(data)
            rng = ("bytes %d-%d/%s" % (sent, sent + len(chunk) - 1,
                                      len(data) if last else "*")) if chunk else \
                "bytes */%d" % len(data)
            status, hdrs, raw = self._raw("PUT", session, chunk, {"Content-Range": rng}, 120,
                                          (200, 308) + tuple(expect), token)
            if status != 308:
                return json.loads(raw)
            got = hdrs.get("Range")
            sent = int(got.split("-")[1]) + 1 if got else 0

    def table_rows(self, dataset="latam_dataset", table="datos", use_int64=True):
        """Every row of a table (tabledata.list, all pages) as {column: cell value}; TIMESTAMP
        cells are int64 microseconds strings unless use_int64 is False."""
        t = self._api("GET", "/projects/%s/datasets/%s/tables/%s" % (self.project, dataset,
                                                                     table))
        names = [f["name"] for f in t["schema"]["fields"]]
        out, token = [], None
        while True:
            q = {"formatOptions.useInt64Timestamp": "true" if use_int64 else "false"}
            if token:
                q["pageToken"] = token
            page = self._api("GET", "/projects/%s/datasets/%s/tables/%s/data?%s"
                             % (self.project, dataset, table, urllib.parse.urlencode(q)))
            for r in page.get("rows", []):
                out.append({n: c["v"] for n, c in zip(names, r["f"])})
            token = page.get("pageToken")
            if not token:
                return out

    # Pub/Sub ------------------------------------------------------------------------------

    def topic_name(self, topic):
        return topic if topic.startswith("projects/") else \
            "projects/%s/topics/%s" % (self.project, topic)

    def subscription_name(self, sub):
        return sub if sub.startswith("projects/") else \
            "projects/%s/subscriptions/%s" % (self.project, sub)

    def create_topic(self, topic, **fields):
        return self._pubsub("PUT", "/" + self.topic_name(topic), fields)

    def get_topic(self, topic):
        return self._pubsub("GET", "/" + self.topic_name(topic))

    def delete_topic(self, topic):
        return self._pubsub("DELETE", "/" + self.topic_name(topic))

    def create_subscription(self, sub, topic, ack_deadline=None, dead_letter_topic=None,
                            max_delivery_attempts=None, min_backoff=None, max_backoff=None,
                            retention=None, expiration_ttl=None, never_expire=False,
                            **fields):
        """Durations are seconds (numbers). never_expire=True sends expirationPolicy {}."""
        body = {"topic": self.topic_name(topic)}
        if ack_deadline is not None:
            body["ackDeadlineSeconds"] = ack_deadline
        if dead_letter_topic is not None:
            body["deadLetterPolicy"] = {"deadLetterTopic": self.topic_name(dead_letter_topic)}
            if max_delivery_attempts is not None:
                body["deadLetterPolicy"]["maxDeliveryAttempts"] = max_delivery_attempts
        if min_backoff is not None or max_backoff is not None:
            body["retryPolicy"] = {}
            if min_backoff is not None:
                body["retryPolicy"]["minimumBackoff"] = "%gs" % min_backoff
            if max_backoff is not None:
                body["retryPolicy"]["maximumBackoff"] = "%gs" % max_backoff
        if retention is not None:
            body["messageRetentionDuration"] = "%gs" % retention
        if never_expire:
            body["expirationPolicy"] = {}
        elif expiration_ttl is not None:
            body["expirationPolicy"] = {"ttl": "%gs" % expiration_ttl}
        body.update(fields)
        return self._pubsub("PUT", "/" + self.subscription_name(sub), body)

    def get_subscription(self, sub):
        return self._pubsub("GET", "/" + self.subscription_name(sub))

    def delete_subscription(self, sub):
        return self._pubsub("DELETE", "/" + self.subscription_name(sub))

    def publish(self, topic, messages):
        """Publish messages (bytes, str, or dicts with `data` bytes/str, `attributes`,
        `ordering_key`) in requests of at most 1,000 messages and ~9 MB. -> message ids."""
        ids, batch, size = [], [], 0
        path = "/%s:publish" % self.topic_name(topic)
        for m in messages:
            if not isinstance(m, dict):
                m = {"data": m}
            data = m.get("data") or b""
            if isinstance(data, str):
                data = data.encode("utf-8")
            item = {}
            if data:
                item["data"] = base64.b64encode(data).decode("ascii")
            if m.get("attributes"):
                item["attributes"] = m["attributes"]
            if m.get("ordering_key"):
                item["orderingKey"] = m["ordering_key"]
            n = len(data) + sum(len(k) + len(v) + 8 for k, v in (m.get("attributes") or
                                                                 {}).items()) + 16
            if batch and (len(batch) >= PUBLISH_BATCH or size + n > PUBLISH_BATCH_BYTES):
                ids += self._pubsub("POST", path, {"messages": batch})["messageIds"]
                batch, size = [], 0
            batch.append(item)
            size += n
        if batch:
            ids += self._pubsub("POST", path, {"messages": batch})["messageIds"]
        return ids

    def pull(self, sub, max_messages=1000, return_immediately=True):
        """One pull -> the receivedMessages list ([] for an empty answer)."""
        body = {"maxMessages": max_messages, "returnImmediately": return_immediately}
        got = self._pubsub("POST", "/%s:pull" % self.subscription_name(sub), body)
        return got.get("receivedMessages", [])

    def ack(self, sub, ack_ids):
        for i in range(0, len(ack_ids), ACK_BATCH):
            self._pubsub("POST", "/%s:acknowledge" % self.subscription_name(sub),
                         {"ackIds": list(ack_ids[i:i + ACK_BATCH])})

    def modify_ack_deadline(self, sub, ack_ids, seconds):
        for i in range(0, len(ack_ids), ACK_BATCH):
            self._pubsub("POST", "/%s:modifyAckDeadline" % self.subscription_name(sub),
                         {"ackIds": list(ack_ids[i:i + ACK_BATCH]),
                          "ackDeadlineSeconds": seconds})

    def drain(self, sub, ack=True):
        """Pull (and ack) until a pull comes back empty -> every received message."""
        out = []
        while True:
            got = self.pull(sub)
            if not got:
                return out
            out += got
            if ack:
                self.ack(sub, [m["ackId"] for m in got])


def message_data(received):
    """The bytes of a received message (a receivedMessages item or its `message`)."""
    m = received.get("message", received)
    return base64.b64decode(m.get("data", ""))


def ndjson(rows):
    return b"".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode("utf-8") +
                    b"\n" for r in rows)
