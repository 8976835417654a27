"""The control API under /_emulator/ (JSON in and out; never requires auth, never counted,
never faulted, never logged)."""
import json
import re

from .errors import ApiError
from .http import BadBody, Response, json_response


class Control:
    def __init__(self, app):
        self.app = app

    def handle(self, req):
        try:
            return self._dispatch(req)
        except ApiError as e:
            return json_response({"error": {"code": e.code, "message": e.message}}, e.code)
        except BadBody as e:
            return json_response({"error": {"code": 400, "message": str(e)}}, 400)

    def _dispatch(self, req):
        app = self.app
        path = req.path.rstrip("/")
        m = req.method
        if path == "/_emulator/health" and m in ("GET", "HEAD"):
            return json_response({"status": "ok"})
        if path == "/_emulator/reset" and m == "POST":
            app.reset()
            return json_response({"status": "ok"})
        if path == "/_emulator/faults":
            if m == "GET":
                return json_response(app.faults.state())
            if m == "POST":
                body = req.json()
                specs = body.get("faults") if isinstance(body.get("faults"), list) else [body]
                ids = [app.faults.add(s) for s in specs]
                return json_response({"id": ids[0]} if len(ids) == 1 else {"ids": ids})
            if m == "DELETE":
                app.faults.clear()
                return json_response({"status": "ok"})
        if path == "/_emulator/faults/release" and m == "POST":
            return json_response({"applying": app.faults.release_all()})
        if path.startswith("/_emulator/faults/") and path.endswith("/release") and m == "POST":
            if not app.faults.release(path.split("/")[3]):
                raise ApiError(404, "No such hold fault")
            return json_response({"status": "ok"})
        if path.startswith("/_emulator/faults/") and m == "GET":
            d = app.faults.describe(path.rsplit("/", 1)[1])
            if d is None:
                raise ApiError(404, "No such fault")
            return json_response(d)
        if path.startswith("/_emulator/faults/") and m == "DELETE":
            if not app.faults.remove(path.rsplit("/", 1)[1]):
                raise ApiError(404, "No such fault")
            return json_response({"status": "ok"})
        if path == "/_emulator/counters":
            if m == "GET":
                with app.meta_lock:
                    return json_response({"counters": dict(app.counters),
                                          "query_bytes": dict(app.query_bytes)})
            if m == "DELETE":
                with app.meta_lock:
                    app.counters.clear()
                    app.query_bytes.clear()
                    app.request_log.clear()
                return json_response({"status": "ok"})
        if path == "/_emulator/requests" and m == "GET":
            ep = req.query.get("endpoint")
            with app.meta_lock:
                items = [e for e in app.request_log if ep is None or e["endpoint"] == ep]
            return Response(200, json.dumps({"requests": items}, ensure_ascii=False,
                                            default=str).encode("utf-8"),
                            "application/json; charset=UTF-8")
        if path == "/_emulator/clock":
            if m == "GET":
                return json_response(_clock(app.clock))
            if m == "POST":
                body = req.json()
                if "advance" in body:
                    app.clock.advance(_number(body["advance"], "advance"))
                elif "set" in body:
                    app.clock.set(_number(body["set"], "set"))
                elif "freeze" in body and isinstance(body["freeze"], bool):
                    if body["freeze"]:
                        app.clock.freeze()
                    else:
                        app.clock.thaw()
                else:
                    raise ApiError(400, 'Clock body needs "advance" (seconds), "set" (epoch) '
                                        'or "freeze" (true or false)')
                return json_response(_clock(app.clock))
        if path == "/_emulator/config":
            if m == "GET":
                return json_response(dict(app.settings))
            if m == "POST":
                app.set_settings(req.json())
                return json_response(dict(app.settings))
        if path == "/_emulator/service-account" and m == "GET":
            return json_response(app.key_info)
        if path == "/_emulator/authorized-user" and m == "GET":
            return json_response(app.auth.authorized_user())
        if path == "/_emulator/authorized-user/revoke" and m == "POST":
            return json_response(app.auth.revoke_user())
        if path == "/_emulator/pubsub" and m == "GET":
            return json_response(app.pubsub.control_summary())
        sm = re.match(r"^/_emulator/pubsub/(projects/[^/]+/subscriptions/[^/]+)(/messages)?$",
                      path)
        if sm and m == "GET":
            limit = _int_query(req, "limit", 1000)
            return json_response(app.pubsub.control_subscription(sm.group(1), bool(sm.group(2)),
                                                                 limit))
        if path.startswith("/_emulator/bigquery/"):
            return self._bigquery(req, path[len("/_emulator/bigquery/"):], m)
        raise ApiError(404, "Unknown control endpoint %s %s" % (m, req.path))


    def _bigquery(self, req, rest, m):
        app = self.app
        st = app.bq
        app.loads.settle()
        now_ms = app.clock.now_ms()
        with st.lock:
            if rest == "jobs" and m == "GET":
                jobs = [_job_summary(j, now_ms) for j in list(st.jobs.values()) +
                        list(st.load_jobs.values())]
                jobs.sort(key=lambda j: j["creationTime"])
                return json_response({"jobs": jobs})
            jm = re.match(r"^jobs/([^/]+)/([^/]+)$", rest)
            if jm and m == "GET":
                j = st.get_job(jm.group(1), jm.group(2))
                if j is None:
                    raise ApiError(404, "No job %s:%s" % (jm.group(1), jm.group(2)))
                out = _job_summary(j, now_ms)
                if hasattr(j, "to_api"):
                    out["job"] = app.loads.render(j)
                return json_response(out)
            if rest == "load-counters" and m == "GET":
                return json_response({"limit": app.settings["load_jobs_per_table_per_day"],
                                      "today": _utc_day(now_ms), "counters": [
                    {"table": "%s:%s.%s" % k[:3], "day": k[3], "count": n}
                    for k, n in sorted(st.load_counts.items())]})
            if rest == "load-counters" and m == "POST":
                body = req.json()
                tm = re.match(r"^([^:]+):([^.]+)\.(.+)$", str(body.get("table", "")))
                if not tm:
                    raise ApiError(400, 'Body needs "table": "project:dataset.table"')
                count = body.get("count")
                if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                    raise ApiError(400, '"count" must be a non-negative integer')
                day = body.get("day") or _utc_day(now_ms)
                st.load_counts[tm.groups() + (day,)] = count
                st.save()
                return json_response({"table": body["table"], "day": day, "count": count})
        raise ApiError(404, "Unknown control endpoint %s %s" % (m, req.path))


def _clock(clock):
    return {"now": clock.now(), "offset": clock.offset, "frozen": clock.frozen}


def _utc_day(ms):
    from .load import utc_day
    return utc_day(ms)


def _job_summary(j, now_ms):
    load = hasattr(j, "to_api")
    if load:
        state = j.state(now_ms)
        error = j.error_result
    else:
        state = "RUNNING" if j.answers_left > 0 else "DONE"
        error = {"reason": j.error.reason, "message": j.error.message} if j.error else None
    out = {"projectId": j.project, "jobId": j.job_id, "location": j.location,
           "jobType": "LOAD" if load else "QUERY", "state": state,
           "creationTime": str(j.created_ms)}
    if error:
        out["errorResult"] = error
    if load:
        out["destinationTable"] = "%s:%s.%s" % j.dest
        if j.stats:
            out["statistics"] = dict(j.stats)
    return out


def _int_query(req, name, default):
    v = req.query.get(name)
    if v is None:
        return default
    if not v.isdigit():
        raise ApiError(400, "%s must be a non-negative integer" % name)
    return int(v)


def _number(v, name):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ApiError(400, "%s must be a number" % name)
    return float(v)
