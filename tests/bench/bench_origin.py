#!/usr/bin/python3
"""The old service's answer, as the origin nginx and Varnish cache in
`make bench` (bench_peers.py).

The service datos replaces was FastAPI under uvicorn: GET /datos answered the
newest rows as FastAPI's JSONResponse renders them (compact, UTF-8), with
uvicorn's headers and no caching headers. This origin sends those bytes,
rendered once by the bench from the table's rows (bench_peers.old_service_body,
checked byte for byte against mod_datos's /datos), with those headers, over
HTTP/1.1 keep-alive. It stands in for a service on another machine, so it runs
on the load generator's CPU; with a warm cache it only sees the refreshes.

    /usr/bin/python3 tests/bench/bench_origin.py --port N --body FILE
"""
import argparse
import email.utils
import http.server
import socketserver


class Origin(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = b""

    def do_GET(self):
        if self.path.split("?", 1)[0] != "/datos":
            self.send_error(404)
            return
        # uvicorn's order: its own headers, then the response's.
        self.send_response_only(200)
        self.send_header("server", "uvicorn")
        self.send_header("date", email.utils.formatdate(usegmt=True))
        self.send_header("content-length", str(len(self.body)))
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--body", required=True)
    args = ap.parse_args()
    with open(args.body, "rb") as f:
        Origin.body = f.read()
    Server(("127.0.0.1", args.port), Origin).serve_forever()


if __name__ == "__main__":
    main()
