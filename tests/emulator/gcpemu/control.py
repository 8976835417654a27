"""The control API under /_emulator/ (JSON in and out; never requires auth, never counted,
never faulted, never logged)."""
import json

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
                return json_response({"faults": app.faults.list()})
            if m == "POST":
                body = req.json()
                specs = body.get("faults") if isinstance(body.get("faults"), list) else [body]
                ids = [app.faults.add(s) for s in specs]
                return json_response({"id": ids[0]} if len(ids) == 1 else {"ids": ids})
            if m == "DELETE":
                app.faults.clear()
                return json_response({"status": "ok"})
        if path.startswith("/_emulator/faults/") and m == "DELETE":
            if not app.faults.remove(path.rsplit("/", 1)[1]):
                raise ApiError(404, "No such fault")
            return json_response({"status": "ok"})
        if path == "/_emulator/counters":
            if m == "GET":
                with app.meta_lock:
                    return json_response({"counters": dict(app.counters)})
            if m == "DELETE":
                with app.meta_lock:
                    app.counters.clear()
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
                return json_response({"now": app.clock.now(), "offset": app.clock.offset})
            if m == "POST":
                body = req.json()
                if "advance" in body:
                    app.clock.advance(_number(body["advance"], "advance"))
                elif "set" in body:
                    app.clock.set(_number(body["set"], "set"))
                else:
                    raise ApiError(400, 'Clock body needs "advance" (seconds) or "set" (epoch)')
                return json_response({"now": app.clock.now(), "offset": app.clock.offset})
        if path == "/_emulator/config":
            if m == "GET":
                return json_response(dict(app.settings))
            if m == "POST":
                app.set_settings(req.json())
                return json_response(dict(app.settings))
        if path == "/_emulator/service-account" and m == "GET":
            return json_response(app.key_info)
        raise ApiError(404, "Unknown control endpoint %s %s" % (m, req.path))


def _number(v, name):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ApiError(400, "%s must be a number" % name)
    return float(v)
