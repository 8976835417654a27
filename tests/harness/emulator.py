"""Start and drive the datos GCP emulator (tests/emulator/server.py) from tests and tools.

Standard library only (urllib), so `make run` can use it as well as pytest:

    emu = Emulator("/work/main/build/test-tmp/emu")
    emu.start()
    emu.create_dataset("latam_dataset")
    emu.create_datos_table()
    emu.insert_rows([{"id": "1", "contenido": "hola", "timestamp": "2024-01-14T14:00:00Z"}])
    ...
    emu.stop()

Convenience methods go through the emulator's public REST API, exactly like a client would.
"""
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EMULATOR_DIR = os.path.join(REPO, "tests", "emulator")
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
        self._jwt = None
        self.port = None
        self.base_url = None
        self.key_file = os.path.join(self.workdir, "service-account.json")
        self.port_file = os.path.join(self.workdir, "emulator.port")
        self.stdout_path = os.path.join(self.workdir, "emulator.stdout")
        self.stderr_path = os.path.join(self.workdir, "emulator.stderr")

    # process ------------------------------------------------------------------------------

    def start(self, timeout=30):
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
        if token:
            headers["Authorization"] = "Bearer " + token
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        if status not in expect:
            raise EmulatorError("%s %s -> %s: %s" % (method, path, status,
                                                     raw.decode("utf-8", "replace")))
        return json.loads(raw) if raw else None

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

    def clear_counters(self):
        self._call("DELETE", "/_emulator/counters")

    def add_fault(self, **spec):
        return self._call("POST", "/_emulator/faults", spec)["id"]

    def faults(self):
        return self._call("GET", "/_emulator/faults")["faults"]

    def clear_faults(self):
        self._call("DELETE", "/_emulator/faults")

    def now(self):
        return self._call("GET", "/_emulator/clock")["now"]

    def advance_clock(self, seconds):
        return self._call("POST", "/_emulator/clock", {"advance": seconds})["now"]

    def set_clock(self, epoch):
        return self._call("POST", "/_emulator/clock", {"set": epoch})["now"]

    def configure(self, **settings):
        return self._call("POST", "/_emulator/config", settings)

    def service_account(self):
        return self._call("GET", "/_emulator/service-account")

    # convenience through the public REST API ----------------------------------------------

    def _api(self, method, path, body=None, expect=(200,)):
        """A BigQuery call; with auth required it carries a self-signed JWT."""
        return self._call(method, "/bigquery/v2" + path, body, timeout=60, expect=expect,
                          token=self._token())

    def _token(self):
        """None when auth is off; else a self-signed JWT (gcp-wire 3.3) made with the trusted
        key, so seeding never shows up in the oauth2/metadata counters tests look at."""
        cfg = self._call("GET", "/_emulator/config")
        if not cfg.get("require_auth"):
            return None
        now = int(time.time())
        if self._jwt and self._jwt[1] > now + 60:
            return self._jwt[0]
        if EMULATOR_DIR not in sys.path:
            sys.path.insert(0, EMULATOR_DIR)
        from gcpemu import keys  # the emulator's own stdlib RSA helpers
        info = self.service_account()
        n, _, d = keys.rsa_private_numbers_from_pem(info["private_key"])
        header = {"alg": "RS256", "typ": "JWT", "kid": info["private_key_id"]}
        claims = {"iss": info["client_email"], "sub": info["client_email"],
                  "aud": "https://bigquery.googleapis.com/", "iat": now, "exp": now + 3600}
        si = (keys.b64url_encode(json.dumps(header).encode()) + "." +
              keys.b64url_encode(json.dumps(claims).encode()))
        jwt = si + "." + keys.b64url_encode(keys.rs256_sign(n, d, si.encode("ascii")))
        self._jwt = (jwt, now + 3600)
        return jwt

    def create_dataset(self, dataset, location="southamerica-east1"):
        return self._api("POST", "/projects/%s/datasets" % self.project,
                         {"datasetReference": {"projectId": self.project, "datasetId": dataset},
                          "location": location})

    def create_datos_table(self, dataset="latam_dataset", table="datos"):
        return self._api("POST", "/projects/%s/datasets/%s/tables" % (self.project, dataset),
                         {"tableReference": {"projectId": self.project, "datasetId": dataset,
                                             "tableId": table},
                          "schema": {"fields": DATOS_SCHEMA},
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
