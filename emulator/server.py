#!/usr/bin/python3
"""datos GCP emulator: BigQuery v2 (queries and load jobs), Pub/Sub v1, the OAuth2 token
endpoint and the GCE metadata server on one port.

    /usr/bin/python3 emulator/server.py --port 0 --port-file /tmp/emu.port

Standard library only. See emulator/README.md for the control API under /_emulator/.
"""
import argparse
import json
import os
import signal
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gcpemu import keys  # noqa: E402
from gcpemu.app import App  # noqa: E402
from gcpemu.http import EmulatorHTTPServer  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="datos GCP emulator (BigQuery, Pub/Sub, OAuth2, "
                                            "metadata)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9050, help="0 picks a free port")
    p.add_argument("--port-file", help="write the bound port number to this file")
    p.add_argument("--project", default="datos-local",
                   help="project id the metadata server reports")
    p.add_argument("--service-account-key", metavar="FILE",
                   help="trust this service-account JSON key (its public half verifies JWTs)")
    p.add_argument("--write-service-account-key", metavar="FILE",
                   help="write the trusted key (generated when no key is given) here, mode 0600")
    p.add_argument("--require-auth", action="store_true",
                   help="API calls need a bearer token from this emulator (or a self-signed JWT)")
    p.add_argument("--write-authorized-user", metavar="FILE",
                   help="write application_default_credentials.json-shaped authorized_user "
                        "credentials (refresh-token grant against this emulator), mode 0600")
    p.add_argument("--data-dir", metavar="DIR",
                   help="persist datasets, tables, rows, jobs, topics, subscriptions and "
                        "messages here (written atomically; reloaded at start)")
    p.add_argument("--token-expires-in", type=int, default=3599)
    p.add_argument("--query-incomplete-polls", type=int, default=0,
                   help="answers reporting jobComplete:false per new query job")
    p.add_argument("--insert-id-window", type=float, default=60.0,
                   help="insertAll insertId dedup window, seconds of emulator clock")
    p.add_argument("--streaming-buffer-seconds", type=float, default=5400.0,
                   help="how long insertAll rows stay in the streaming buffer (tables.get)")
    p.add_argument("--pull-wait-seconds", type=float, default=0.5,
                   help="how long (real time) a pull without returnImmediately waits for "
                        "messages before answering {}")
    p.add_argument("--pull-max-messages", type=int, default=1000,
                   help="at most this many messages per pull (Google: 1,000)")
    p.add_argument("--pull-max-bytes", type=int, default=20_000_000,
                   help="a pull answer stops taking messages before it passes this many "
                        "bytes of JSON (always one at least; 0: no bound; default 20,000,000, "
                        "the ~20 MB of docs/google-apis.md 1.5)")
    p.add_argument("--load-job-pending-seconds", type=float, default=0.0,
                   help="emulator-clock seconds a load job stays PENDING")
    p.add_argument("--load-job-running-seconds", type=float, default=0.0,
                   help="emulator-clock seconds a load job stays RUNNING before DONE")
    p.add_argument("--load-jobs-per-table-per-day", type=int, default=1500,
                   help="load jobs per table per UTC day before quotaExceeded")
    p.add_argument("--tls-cert", metavar="FILE",
                   help="serve https with this PEM certificate (chain) instead of plain http")
    p.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    server = EmulatorHTTPServer((args.host, args.port), None)
    port = server.server_address[1]
    scheme = "http"
    if args.tls_cert:
        # Lets tests prove certificate verification (and a private CA file)
        # the way Google's https endpoints are reached.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        # The handshake runs in the request thread, not in the accept loop.
        server.socket = ctx.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
        scheme = "https"
    display_host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
    token_uri = "%s://%s:%d/token" % (scheme, display_host, port)
    if args.service_account_key:
        with open(args.service_account_key, encoding="utf-8") as f:
            key_info = json.load(f)
    else:
        key_info = keys.make_service_account(args.project, token_uri)
    if args.write_service_account_key:
        keys.write_private_file(args.write_service_account_key, json.dumps(key_info, indent=2))
    settings = {"require_auth": bool(args.require_auth),
                "token_expires_in": args.token_expires_in,
                "query_incomplete_polls": args.query_incomplete_polls,
                "insert_id_window": args.insert_id_window,
                "streaming_buffer_seconds": args.streaming_buffer_seconds,
                "pull_wait_seconds": args.pull_wait_seconds,
                "pull_max_messages": args.pull_max_messages,
                "pull_max_bytes": args.pull_max_bytes,
                "load_job_pending_seconds": args.load_job_pending_seconds,
                "load_job_running_seconds": args.load_job_running_seconds,
                "load_jobs_per_table_per_day": args.load_jobs_per_table_per_day}
    app = App(args.host, port, args.project, key_info, settings, data_dir=args.data_dir,
              verbose=args.verbose, scheme=scheme)
    server.app = app
    if args.write_authorized_user:
        keys.write_private_file(args.write_authorized_user,
                                json.dumps(app.auth.authorized_user(), indent=2))
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("datos-gcp-emulator listening on %s://%s:%d" % (scheme, args.host, port), flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except SystemExit:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
