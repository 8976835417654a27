"""The libdatos Google clients (Pub/Sub, BigQuery load jobs, credentials) against the real
emulator, through build/tests/test_emulator_clients (the ASan build with DATOS_SANITIZE=1).

The emulator requires tokens here: the calls carry authorized_user credentials (the
refresh-token grant) or the metadata server's, and the emulator checks each one."""
import os
import re
import subprocess

import pytest

from tools.httpd import BUILD_DIR, TEST_TMP

ROWS = 9000          # about 1.3 MB of NDJSON: five resumable chunks and a partial one
CHUNK = 256 * 1024


def binary():
    sanitize = os.environ.get("DATOS_SANITIZE") == "1"
    path = os.path.join(BUILD_DIR, "asan" if sanitize else "", "tests", "test_emulator_clients")
    if not os.path.exists(path):
        pytest.fail("%s is missing: run make test-build" % path)
    return path


@pytest.fixture(scope="module")
def world(emulator):
    emulator.configure(require_auth=True)
    emulator.create_dataset("clients_ds")
    emulator.create_datos_table(dataset="clients_ds")
    emulator.create_topic("clients-topic")
    emulator.create_subscription("clients-sub", "clients-topic", ack_deadline=120)
    work = os.path.join(TEST_TMP, "libdatos-clients")
    os.makedirs(work, exist_ok=True)
    user_file = emulator.write_authorized_user(os.path.join(work, "adc.json"))
    host = "127.0.0.1:%d" % emulator.port
    env = dict(os.environ,
               BIGQUERY_EMULATOR_HOST=emulator.base_url, PUBSUB_EMULATOR_HOST=host,
               GCE_METADATA_HOST=host, DATOS_EMU_PROJECT=emulator.project,
               DATOS_EMU_DATASET="clients_ds",
               DATOS_EMU_TOPIC=emulator.topic_name("clients-topic"),
               DATOS_EMU_SUBSCRIPTION=emulator.subscription_name("clients-sub"),
               DATOS_EMU_USER_FILE=user_file, DATOS_EMU_RESUMABLE_ROWS=str(ROWS),
               DATOS_TEST_TMP=TEST_TMP, CLOUDSDK_CONFIG=os.path.join(work, "no-gcloud"))
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    yield env
    emulator.configure(require_auth=False)


def test_clients_against_the_emulator(world, emulator):
    emulator.clear_counters()
    run = subprocess.run([binary()], env=world, capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "[  PASSED  ] 3 test(s)." in out, out
    assert "SKIPPED" not in out, out

    # What the emulator saw: the user's refresh-token grant, the metadata server asked
    # with its header, and every API call authenticated (require_auth is on).
    grants = [r for r in emulator.requests("oauth2.token")]
    assert grants and all("grant_type=refresh_token" in r["body"] for r in grants), grants
    assert emulator.count("metadata.token") >= 1
    md = emulator.requests("metadata.token")
    assert all(r["headers"].get("Metadata-Flavor") == "Google" for r in md)
    assert md[0]["query"]["scopes"] == ("https://www.googleapis.com/auth/bigquery,"
                                        "https://www.googleapis.com/auth/pubsub")
    for endpoint in ("pubsub.topics.publish", "pubsub.subscriptions.pull",
                     "bigquery.jobs.insert.multipart", "bigquery.jobs.insert.resumable"):
        reqs = emulator.requests(endpoint)
        assert reqs, endpoint
        assert all(r["status"] in (200, 409, 404) for r in reqs), (endpoint, reqs)
    # user credentials bill their quota project
    publish = emulator.requests("pubsub.topics.publish")[0]
    assert publish["headers"].get("x-goog-user-project") == emulator.project
    # the upload went in 256 KiB chunks, each answered 308 with the Range that the next
    # one starts from, the last one stating the total
    size = int(re.search(r"resumable load: %d rows, (\d+) bytes" % ROWS, out).group(1))
    puts = emulator.requests("bigquery.jobs.insert.resumable.upload")
    want = ["bytes %d-%d/%s" % (a, min(a + CHUNK, size) - 1, size if a + CHUNK >= size else "*")
            for a in range(0, size, CHUNK)]
    assert [r["headers"].get("Content-Range") for r in puts] == want
    assert [r["status"] for r in puts] == [308] * (len(want) - 1) + [200]
    start = emulator.requests("bigquery.jobs.insert.resumable")[0]
    assert start["headers"].get("X-Upload-Content-Length") == str(size)

    # The loads landed: 3 multipart rows and every resumable row, once.
    rows = emulator.table_rows(dataset="clients_ds")
    ids = sorted(r["id"] for r in rows)
    assert ids[:3] == ["mp0", "mp1", "mp2"]
    assert ids[3:] == ["rs%06d" % i for i in range(ROWS)]
