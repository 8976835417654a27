"""`datos-loader --check-config`, the real binary: it judges a configuration as a run would,
says so in one line on stdout (exit 0 or 2), and reaches no network and writes no file."""
import json
import os

import pytest

from harness.loader import PIPELINE, Loader, make_pipeline


def total(counters):
    return sum(v for v in counters.values() if isinstance(v, int))


def one_line(r):
    assert r.stdout.count("\n") == 1, r.stdout
    return r.stdout.rstrip("\n")


def key_file(emulator, loader, mode):
    path = os.path.join(loader.dir, "key.json")
    with open(path, "w") as f:
        json.dump(emulator.service_account(), f)
    os.chmod(path, mode)
    return path


def test_a_valid_configuration_says_so_and_reaches_nothing(emulator):
    make_pipeline(emulator)
    loader = Loader(emulator, "check-valid")
    before = total(emulator.counters())
    r = loader.run("--check-config")
    assert r.rc == 0, r
    line = one_line(r)
    assert line.startswith("datos-loader: configuration valid: %s;" % loader.config_file), line
    assert "project: %s" % emulator.project in line, line
    assert r.events == []
    # no call to the emulator (Pub/Sub, BigQuery, token, metadata), no journal, no lock
    assert total(emulator.counters()) == before
    assert not os.path.exists(loader.state_dir)


def test_a_project_only_the_metadata_server_knows_is_not_asked_for(emulator):
    loader = Loader(emulator, "check-metadata", project=None, credentials="metadata")
    before = total(emulator.counters())
    r = loader.run("--check-config", env={"GCE_METADATA_HOST": "127.0.0.1:%d" % emulator.port,
                                          "PUBSUB_EMULATOR_HOST": None,
                                          "BIGQUERY_EMULATOR_HOST": None})
    assert r.rc == 0, r
    line = one_line(r)
    assert "credentials: metadata server 127.0.0.1:%d" % emulator.port in line, line
    assert "project: the metadata server's, asked at run time" in line, line
    assert total(emulator.counters()) == before


def test_a_key_file_gives_its_project_without_a_token(emulator):
    loader = Loader(emulator, "check-key", project=None)
    loader.write_config(credentials=key_file(emulator, loader, 0o600))
    before = emulator.count("oauth2.token")
    r = loader.run("--check-config")
    assert r.rc == 0, r
    assert "project: %s" % emulator.project in one_line(r)
    assert emulator.count("oauth2.token") == before


# BIGQUERY_EMULATOR_HOST would override the file's bigquery_url, as it does for a run.
NO_BQ_EMULATOR = {"BIGQUERY_EMULATOR_HOST": None}


@pytest.mark.parametrize("settings,env,names", [
    ({"batch_max_rows": "lots"}, None, "batch_max_rows"),
    ({"retry_initial": "10s", "retry_max": "1s"}, None, "retry_max"),
    ({"subscription": "projects/datos-local/topics/wrong"}, None, "subscription"),
    ({"bigquery_url": "http://example.com/bigquery/v2"}, NO_BQ_EMULATOR, "allow_insecure_http"),
    ({"project": None, "credentials": "none"}, None, "project"),
    ({"key_mode": 0o644}, None, "credentials"),
], ids=["value", "cross-setting", "name", "plain-http", "no-project", "key-mode"])
def test_an_error_is_the_one_a_run_reports(emulator, settings, env, names):
    """The check says exactly what a run says, before the run would call Google."""
    make_pipeline(emulator)
    emulator.publish(PIPELINE["topic"], [b'{"id":"kept","timestamp":"2024-01-14T14:00:00Z"}'])
    settings = dict(settings)
    loader = Loader(emulator, "check-bad")
    if "key_mode" in settings:
        settings["credentials"] = key_file(emulator, loader, settings.pop("key_mode"))
    loader.write_config(**settings)
    checked = loader.run("--check-config", env=env)
    assert checked.rc == 2, checked
    message = checked.one("config_error")["message"]
    assert names in message, message
    assert one_line(checked) == "datos-loader: configuration error: " + message
    ran = loader.run(env=env)
    assert ran.rc == 2, ran
    # The same error; the check may name the setting more precisely (a run names an API URL
    # it cannot use as "pubsub_url/bigquery_url").
    said = ran.one("config_error")["message"]
    assert said == message or said.split(": ", 1)[-1] == message.split(": ", 1)[-1], \
        (said, message)
    # neither pulled: the message waits, never delivered
    stats = emulator.subscription_stats(PIPELINE["subscription"])
    assert stats["ready"] == 1 and stats["delivered"] == 0, stats


def test_the_environment_and_flags_are_checked_too(emulator):
    loader = Loader(emulator, "check-env")
    r = loader.run("--check-config", "--max-seconds", "forever")
    assert r.rc == 2 and "--max-seconds" in one_line(r), r
    r = loader.run("--check-config", env={"GOOGLE_CLOUD_PROJECT": "Not_A_Project"})
    assert r.rc == 2 and "project" in one_line(r), r
