"""datos GCP emulator: a standard-library-only stand-in for the Google Cloud REST APIs
that datos talks to (BigQuery v2 with queries, streaming inserts and load jobs, Pub/Sub v1,
the OAuth2 token endpoint, the GCE metadata server), all in one route table (app.py).

Everything here follows docs/google-apis.md. Where real behaviour is uncertain ([mem] there),
the stricter behaviour is chosen and the choice is commented where it is made.
"""

__all__ = ["app", "auth", "bigquery", "control", "errors", "faults", "http", "sql", "state",
           "bqtypes", "clock", "keys", "journal", "load", "pubsub"]
