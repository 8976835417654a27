"""Credentials through the real httpd: a service-account key whose JWT the
emulator verifies, token caching and refresh, refused keys, and the
metadata server."""
import json
import os
import subprocess

import pytest

from tools.httpd import TEST_TMP
from datos_env import contract_rows, datos_conf, expected_answer, get, seed

KEYS_DIR = os.path.join(TEST_TMP, "keys")
ONE_PROCESS = "StartServers 1\nServerLimit 1\nThreadsPerChild 8\nMaxRequestWorkers 8\n" \
              "MinSpareThreads 1\nMaxSpareThreads 8\n"


@pytest.fixture(scope="module")
def rows(emulator):
    rows = contract_rows(emulator.now())
    seed(emulator, rows)
    emulator.configure(require_auth=True)
    yield rows
    emulator.configure(require_auth=False)


def key_copy(emulator, name, mode=0o600, **changes):
    """A key file derived from the emulator's service account."""
    with open(emulator.key_file) as f:
        key = json.load(f)
    key.update(changes)
    os.makedirs(KEYS_DIR, exist_ok=True)
    path = os.path.join(KEYS_DIR, name)
    with open(path, "w") as f:
        json.dump(key, f)
    os.chmod(path, mode)
    return path


def other_private_key():
    out = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
                         capture_output=True, text=True, check=True)
    return out.stdout


def start(httpd_factory, emulator, name, credentials, project="datos-local", env=None, extra=""):
    h = httpd_factory(name, env=env)
    h.write_config(datos_conf(emulator, credentials=credentials, project=project, extra=extra, fresh_for="0"))
    h.start()
    return h


def test_api_refuses_anonymous_calls_when_auth_is_required(rows, httpd_factory, emulator):
    h = start(httpd_factory, emulator, "auth-none", "none")
    h.log.expect(r"DT0201.*auth")
    r = get(h, "/datos")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == 503
    assert r.headers["Cache-Control"] == "no-store"


def test_key_file_jwt_is_verified_and_the_token_cached(rows, httpd_factory, emulator):
    h = start(httpd_factory, emulator, "auth-key", key_copy(emulator, "good.json"), project=None)
    emulator.clear_counters()
    for _ in range(12):
        r = get(h, "/datos")
        assert r.status_code == 200
        assert r.json()["datos"] == expected_answer(rows, 10)
    # One token per httpd child at most, not one per request.
    assert 1 <= emulator.count("oauth2.token") <= 4
    sent = emulator.requests("bigquery.jobs.query")
    assert sent and all(q["headers"].get("Authorization", "").startswith("Bearer ya29.") for q in sent)
    # The project came from the key file (no DatosProject).
    assert all(q["path"] == "/bigquery/v2/projects/datos-local/queries" for q in sent)


def test_expired_token_is_refreshed_once_after_a_401(rows, httpd_factory, emulator):
    # One child process, so the request after the clock jump meets the
    # token that child cached.
    h = httpd_factory("auth-expiry")
    h.write_config(datos_conf(emulator, credentials=key_copy(emulator, "expiry.json"), fresh_for="0"),
                   mpm_tuning=ONE_PROCESS)
    h.start()
    assert get(h, "/datos").status_code == 200
    emulator.clear_counters()
    emulator.advance_clock(2 * 3600)  # every token issued so far has expired
    r = get(h, "/datos")
    assert r.status_code == 200
    assert r.json()["datos"] == expected_answer(rows, 10)
    statuses = [q["status"] for q in emulator.requests("bigquery.jobs.query")]
    assert statuses[0] == 401      # the cached token was refused...
    assert 401 not in statuses[1:]  # ...once: the replay carried a new one
    assert emulator.count("oauth2.token") == 1


def test_wrong_private_key_is_refused_by_the_token_endpoint(rows, httpd_factory, emulator):
    path = key_copy(emulator, "wrong.json", private_key=other_private_key())
    h = start(httpd_factory, emulator, "auth-wrong", path)
    h.log.expect(r"DT0201.*auth")
    r = get(h, "/datos")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == 503
    tokens = emulator.requests("oauth2.token")
    assert tokens and tokens[-1]["status"] == 400
    # The refusal names the grant error; the key itself is never logged.
    log = open(h.log.path).read()
    assert "invalid_grant" in log
    assert "PRIVATE KEY" not in log and "assertion=" not in log


def test_key_file_readable_by_others_fails_the_config_test(httpd_factory, emulator):
    path = key_copy(emulator, "open.json", mode=0o644)
    h = httpd_factory("auth-open")
    h.write_config(datos_conf(emulator, credentials=path, fresh_for="0"))
    rc, out = h.configtest()
    assert rc != 0
    assert "DatosCredentials" in out
    assert "group or others" in out or "0644" in out
    assert "PRIVATE KEY" not in out


@pytest.mark.parametrize("key_type", ["authorized_user", "external_account", "impersonated_service_account"])
def test_other_credential_types_are_refused_by_name(httpd_factory, emulator, key_type):
    path = key_copy(emulator, key_type + ".json", type=key_type)
    h = httpd_factory("auth-type")
    h.write_config(datos_conf(emulator, credentials=path, fresh_for="0"))
    rc, out = h.configtest()
    assert rc != 0
    assert "DatosCredentials" in out and key_type in out


def test_metadata_server_credentials_and_project(rows, httpd_factory, emulator):
    host = emulator.base_url.split("://", 1)[1]
    h = start(httpd_factory, emulator, "auth-metadata", "metadata", project=None,
              env={"GCE_METADATA_HOST": host})
    emulator.clear_counters()
    r = get(h, "/datos")
    assert r.status_code == 200
    assert r.json()["datos"] == expected_answer(rows, 10)
    tokens = emulator.requests("metadata.token")
    assert tokens and all(t["headers"].get("Metadata-Flavor") == "Google" for t in tokens)
    assert emulator.count("oauth2.token") == 0
    assert emulator.requests("bigquery.jobs.query")[0]["path"].startswith("/bigquery/v2/projects/datos-local/")


def test_application_default_credentials_from_the_environment(rows, httpd_factory, emulator):
    path = key_copy(emulator, "adc.json")
    h = httpd_factory("auth-adc", env={"GOOGLE_APPLICATION_CREDENTIALS": path})
    conf = datos_conf(emulator, credentials=None, fresh_for="0")
    h.write_config(conf)
    h.start()
    emulator.clear_counters()
    assert get(h, "/datos").status_code == 200
    assert emulator.count("oauth2.token") >= 1


def test_trace_logging_never_shows_keys_tokens_or_assertions(rows, httpd_factory, emulator):
    h = httpd_factory("auth-trace", loglevel="notice datos:trace4")
    h.write_config(datos_conf(emulator, credentials=key_copy(emulator, "trace.json"), fresh_for="0"))
    h.start()
    emulator.clear_counters()
    assert get(h, "/datos").status_code == 200
    h.stop()
    log = open(h.log.path).read()
    # The exchanges really were traced...
    assert "curl >>" in log and "/token" in log and "/queries" in log
    # ...but nothing that grants access reached the log.
    tokens = [t["body"] for t in emulator.requests("oauth2.token")]
    assert tokens
    issued = [q["headers"]["Authorization"].split(" ", 1)[1]
              for q in emulator.requests("bigquery.jobs.query")]
    assert issued
    for secret in issued:
        assert secret not in log
    assert "eyJhbGciOi" not in log          # a JWT header, base64url
    assert "PRIVATE KEY" not in log
