"""The emulator application: settings, the route table (method + path pattern -> endpoint
name + handler), counters, the request log, faults, auth and error mapping.

New services slot in by adding routes: `(method, regex, endpoint name, handler, family[,
query predicate])`. `family` picks the error style (bigquery: envelope with errors[];
pubsub: plain envelope; oauth: OAuth shape; metadata: text) and whether --require-auth
applies. A query predicate (a function of the query parameters) lets one path carry several
endpoints, as the upload path does with `uploadType`."""
import collections
import os
import re
import sys
import threading
import time
import traceback

from .auth import Auth
from .bigquery import BigQueryApi
from .clock import Clock
from .control import Control
from .errors import (ApiError, DEFAULT_MESSAGES, DEFAULT_REASONS, OAuthError, RawError,
                     bigquery_envelope, domain_for, plain_envelope)
from .faults import FaultPlan
from .http import BadBody, Response, json_bytes, json_response
from .keys import ServiceAccountKey
from .load import LoadApi
from .pubsub import PubSubApi, PubSubState
from .state import BigQueryState

AUTH_FAMILIES = {"bigquery", "pubsub"}
REQUEST_LOG_SIZE = 2000
SETTINGS = {  # name -> (type, minimum)
    "require_auth": (bool, None),
    "token_expires_in": (int, 1),
    "query_incomplete_polls": (int, 0),
    "insert_id_window": (float, 0),
    "streaming_buffer_seconds": (float, 0),
    "pull_wait_seconds": (float, 0),
    "pull_max_messages": (int, 1),
    "load_job_pending_seconds": (float, 0),
    "load_job_running_seconds": (float, 0),
    "load_jobs_per_table_per_day": (int, 0),
}
SETTING_DEFAULTS = {"pull_wait_seconds": 0.5, "pull_max_messages": 1000,
                    "load_job_pending_seconds": 0.0, "load_job_running_seconds": 0.0,
                    "load_jobs_per_table_per_day": 1500}


class Route:
    __slots__ = ("method", "regex", "endpoint", "handler", "family", "query")

    def __init__(self, method, pattern, endpoint, handler, family, query=None):
        self.method = method
        self.regex = re.compile(pattern)
        self.endpoint = endpoint
        self.handler = handler
        self.family = family
        self.query = query


class App:
    def __init__(self, host, port, project, key_info, settings, data_dir=None, verbose=False,
                 scheme="http"):
        self.host = host
        self.port = port
        self.scheme = scheme
        self.project = project
        self.verbose = verbose
        self.clock = Clock()
        settings = dict(SETTING_DEFAULTS, **settings)
        self.initial_settings = dict(settings)
        self.settings = dict(settings)
        self.trusted_keys = [ServiceAccountKey(key_info)]
        self.key_info = key_info
        self.faults = FaultPlan()
        self.epoch = 0
        self.counters = collections.Counter()
        # What the query jobs run would cost on BigQuery: the benchmarks
        # compare designs by it (kept apart from the per-endpoint counts).
        self.query_bytes = collections.Counter()
        self.request_log = collections.deque(maxlen=REQUEST_LOG_SIZE)
        self.meta_lock = threading.Lock()
        data_file = os.path.join(data_dir, "bigquery.json") if data_dir else None
        if data_dir:
            os.makedirs(data_dir, exist_ok=True)
        self.bq = BigQueryState(self.clock, data_file)
        self.bq.load()
        self.pubsub_state = PubSubState(self.clock, data_dir)
        self.pubsub_state.load()
        self.auth = Auth(self)
        self.bigquery = BigQueryApi(self)
        self.loads = LoadApi(self)
        if data_dir:
            self.loads.restore_pending()
        self.pubsub = PubSubApi(self, self.pubsub_state)
        self.control = Control(self)
        self._tb_seen = set()
        self.routes = []
        for spec in self.loads.routes() + self.bigquery.routes() + self.pubsub.routes():
            self.add_route(*spec)
        self.add_route("POST", r"^/token$", "oauth2.token", self.auth.token_endpoint, "oauth")
        md = "/computeMetadata/v1"
        self.add_route("GET", "^%s/instance/service-accounts/default/token$" % md,
                       "metadata.token", self.auth.metadata_token, "metadata")
        self.add_route("GET", "^%s/project/project-id$" % md, "metadata.projectId",
                       lambda req: self.auth.metadata_text(req, self.project), "metadata")
        self.add_route("GET", "^%s/instance/service-accounts/default/email$" % md,
                       "metadata.email",
                       lambda req: self.auth.metadata_text(req, self.trusted_keys[0].email),
                       "metadata")
        self.add_route("GET", "^%s/universe/universe-domain$" % md, "metadata.universeDomain",
                       lambda req: self.auth.metadata_text(req, "googleapis.com"), "metadata")
        self.add_route("GET", "^%s/instance/?$" % md, "metadata.instance",
                       lambda req: self.auth.metadata_text(
                           req, "attributes/\nhostname\nid\nservice-accounts/\nzone\n"),
                       "metadata")
        self.add_route("GET", "^%s/?$" % md, "metadata.root",
                       lambda req: self.auth.metadata_text(req, "instance/\nproject/\n"),
                       "metadata")

    # set-up -------------------------------------------------------------------------------

    def add_route(self, method, pattern, endpoint, handler, family, query=None):
        self.routes.append(Route(method, pattern, endpoint, handler, family, query))

    @property
    def base_url(self):
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        if ":" in host:
            host = "[%s]" % host
        return "%s://%s:%d" % (self.scheme, host, self.port)

    @property
    def token_url(self):
        return self.base_url + "/token"

    def reset(self):
        # A request a delay fault still holds belongs to the world before the
        # reset: it must not land in the new one (see apply_fault).
        self.epoch += 1
        self.faults.clear()
        with self.meta_lock:
            self.counters.clear()
            self.query_bytes.clear()
            self.request_log.clear()
        self.auth.reset()
        self.clock.reset()
        self.settings = dict(self.initial_settings)
        self.bq.reset()
        self.loads.uploads.clear()
        self.pubsub_state.reset()

    def set_settings(self, changes):
        for k, v in changes.items():
            if k not in SETTINGS:
                raise ApiError(400, "Unknown setting %s (known: %s)"
                               % (k, ", ".join(sorted(SETTINGS))))
            typ, minimum = SETTINGS[k]
            if typ is bool:
                if not isinstance(v, bool):
                    raise ApiError(400, "Setting %s must be true or false" % k)
            else:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or \
                        (typ is int and int(v) != v):
                    raise ApiError(400, "Setting %s must be a number" % k)
                v = typ(v)
                if minimum is not None and v < minimum:
                    raise ApiError(400, "Setting %s must be >= %s" % (k, minimum))
        for k, v in changes.items():
            self.settings[k] = SETTINGS[k][0](v)

    def count_query_bytes(self, processed, billed):
        with self.meta_lock:
            self.query_bytes["jobs"] += 1
            self.query_bytes["processed"] += processed
            self.query_bytes["billed"] += billed

    # dispatch -----------------------------------------------------------------------------

    def match(self, method, path, query=None):
        hit_other_method = False
        for r in self.routes:
            m = r.regex.match(path)
            if m is None:
                continue
            if r.query is not None and not r.query(query or {}):
                continue
            if r.method != method and not (method == "HEAD" and r.method == "GET"):
                hit_other_method = True
                continue
            return r, m.groupdict(), False
        return None, {}, hit_other_method

    def handle(self, req):
        if req.path.startswith("/_emulator/") or req.path == "/_emulator":
            return self.control.handle(req)
        route, params, wrong_method = self.match(req.method, req.path, req.query)
        endpoint = route.endpoint if route else "unknown"
        req.endpoint = endpoint
        req.params = params
        entry = {"time": self.clock.now(), "wall": time.time(), "method": req.method,
                 "path": req.path,
                 "query": {k: (v[0] if len(v) == 1 else v) for k, v in req.query_multi.items()},
                 "endpoint": endpoint, "headers": dict(req.headers),
                 "body": req.body_for_log(), "status": None}
        with self.meta_lock:
            self.counters[endpoint] += 1
            self.request_log.append(entry)
        fault = self.faults.take(req.method, req.path, endpoint)
        family = route.family if route else family_of(req.path)
        if fault is not None:
            resp = self.apply_fault(fault, req, route, family, wrong_method)
        else:
            resp = self.process(req, route, family, wrong_method)
        entry["status"] = None if resp.mode == "drop" else resp.status
        return resp

    def process(self, req, route, family, wrong_method):
        try:
            if route is None:
                if wrong_method:
                    # Google's front end answers an unmapped method on a known path with 404.
                    raise ApiError(404, "Method %s is not supported for %s"
                                   % (req.method, req.path), "notFound")
                raise ApiError(404, "Not found: URL %s" % req.path, "notFound")
            if family in AUTH_FAMILIES and self.settings["require_auth"]:
                self.auth.check_bearer(req, family)
            if family == "bigquery":
                self.loads.settle()  # load jobs whose DONE time came commit first
            return route.handler(req, **req.params)
        except ApiError as e:
            return self.error_response(e, family, req)
        except OAuthError as e:
            return Response(e.code, json_bytes(e.body()), "application/json; charset=utf-8")
        except RawError as e:
            return Response(e.code, e.body, e.content_type, e.headers)
        except BadBody as e:
            return self.error_response(ApiError(400, str(e), "parseError"), family, req)
        except Exception:
            tb = traceback.format_exc()
            key = tb.strip().splitlines()[-1]
            if key not in self._tb_seen:
                self._tb_seen.add(key)
                sys.stderr.write("datos-gcp-emulator: internal error on %s %s\n%s"
                                 % (req.method, req.path, tb))
                sys.stderr.flush()
            return self.error_response(ApiError(500, "An internal error occurred in the datos "
                                                     "GCP emulator.", "internalError"),
                                       family, req)

    def error_response(self, e, family, req=None):
        if family == "oauth":
            return Response(e.code, json_bytes({"error": "invalid_request",
                                                "error_description": e.message}),
                            "application/json; charset=utf-8", e.headers)
        if family == "metadata":
            return Response(e.code, e.message + "\n", "text/html; charset=UTF-8",
                            dict(e.headers, **{"Metadata-Flavor": "Google"}))
        body = e.envelope("plain" if family == "pubsub" else "bigquery")
        pretty = req is not None and req.query.get("prettyPrint", "true").lower() != "false"
        return json_response(body, e.code, e.headers, pretty=pretty)

    # faults -------------------------------------------------------------------------------

    def apply_fault(self, fault, req, route, family, wrong_method):
        with self.faults.applied():
            return self._apply_fault(fault, req, route, family, wrong_method)

    def _apply_fault(self, fault, req, route, family, wrong_method):
        epoch = self.epoch
        if fault.delay_ms:
            time.sleep(fault.delay_ms / 1000.0)
            if self.epoch != epoch:
                return Response(0, b"", mode="drop")
        action = fault.action
        if action == "hold":
            fault.hold()
            if self.epoch != epoch:
                return Response(0, b"", mode="drop")
            return self.process(req, route, family, wrong_method)
        if action == "delay":
            return self.process(req, route, family, wrong_method)
        if action == "drop":
            return Response(0, b"", mode="drop")
        if action == "commit_then_drop":
            self.process(req, route, family, wrong_method)
            return Response(0, b"", mode="drop")
        if action == "truncate":
            resp = self.process(req, route, family, wrong_method)
            resp.mode = "truncate"
            return resp
        if action == "job_error":
            # The request goes through; the job it creates ends DONE with this error.
            req.forced_job_error = (fault.reason or "backendError", fault.message)
            return self.process(req, route, family, wrong_method)
        if action == "malformed":
            return Response(200, b'{"kind": "bigquery#malformed", "rows": [{"f": [{"v": "1"}',
                            "application/json; charset=UTF-8", fault.headers)
        # status
        code = fault.status
        headers = dict(fault.headers)
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        if fault.body is not None:
            return Response(code, fault.body, fault.content_type or "text/html; charset=UTF-8",
                            headers)
        reason = fault.reason or DEFAULT_REASONS.get(code, "backendError" if code >= 500
                                                     else "invalid")
        message = fault.message or DEFAULT_MESSAGES.get(reason) or "Injected fault"
        if family == "oauth":
            err = fault.reason or ("internal_failure" if code >= 500 else "invalid_request")
            return Response(code, json_bytes({"error": err, "error_description": message}),
                            "application/json; charset=utf-8", headers)
        if family == "metadata":
            return Response(code, message + "\n", fault.content_type or "text/html; charset=UTF-8",
                            headers)
        if family == "pubsub":
            body = plain_envelope(code, message)
        else:
            body = bigquery_envelope(code, message, reason, fault.domain or domain_for(reason))
        return json_response(body, code, headers)


def family_of(path):
    """The error style for a path no route knows."""
    if path.startswith("/v1/"):
        return "pubsub"
    if path.startswith("/computeMetadata/"):
        return "metadata"
    return "bigquery"
