"""https with certificate verification, as Google is reached in production:
a private CA through DatosCACertificateFile is trusted, anything else is
refused, and there is no switch to skip verification."""
import json
import os
import subprocess
import time

import pytest

from gcpemu.client import Emulator
from tools.httpd import TEST_TMP
from datos_env import contract_rows, datos_conf, expected_answer, get, seed
from harness.loader import PIPELINE, Loader, make_pipeline

PKI = os.path.join(TEST_TMP, "pki")


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True, cwd=PKI)


def make_ca(name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=datos test %s" % name, "-keyout", name + ".key", "-out", name + ".pem")
    return os.path.join(PKI, name + ".pem")


@pytest.fixture(scope="module")
def tls_emulator():
    os.makedirs(PKI, mode=0o755, exist_ok=True)
    ca = make_ca("ca")
    make_ca("rogue-ca")
    with open(os.path.join(PKI, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem")
    for name in os.listdir(PKI):
        os.chmod(os.path.join(PKI, name), 0o644)
    emu = Emulator(os.path.join(TEST_TMP, "emulator-tls"),
                   tls=(os.path.join(PKI, "server.pem"), os.path.join(PKI, "server.key"), ca))
    emu.start()
    rows = contract_rows(emu.now())
    seed(emu, rows)
    yield emu, rows, ca
    emu.stop()


def test_private_ca_is_trusted_through_the_directive(tls_emulator, httpd_factory):
    emu, rows, ca = tls_emulator
    assert emu.base_url.startswith("https://")
    h = httpd_factory("tls-ca")
    h.write_config(datos_conf(emu, extra="DatosCACertificateFile %s\n" % ca, fresh_for="0"))
    h.start()
    r = get(h, "/datos")
    assert r.status_code == 200
    assert r.json()["datos"] == expected_answer(rows, 10)


@pytest.mark.parametrize("ca_line", ["", "DatosCACertificateFile ${pki}/rogue-ca.pem"],
                         ids=["system-bundle", "other-ca"])
def test_an_untrusted_certificate_is_refused(tls_emulator, httpd_factory, ca_line):
    emu, _, _ = tls_emulator
    h = httpd_factory("tls-untrusted")
    h.write_config(datos_conf(emu, extra=ca_line.replace("${pki}", PKI) + "\n", fresh_for="0"))
    h.start()
    h.log.expect(r"DT0201.*\(connect_error,.*(certificate|SSL)")
    emu.clear_counters()
    r = get(h, "/datos")
    assert r.status_code == 502
    assert r.json()["error"]["code"] == 502
    # The TLS handshake failed before any request reached the emulator.
    assert emu.count("bigquery.jobs.query") == 0


def test_key_file_token_exchange_over_https(tls_emulator, httpd_factory):
    emu, rows, ca = tls_emulator
    with open(emu.key_file) as f:
        key = json.load(f)
    assert key["token_uri"].startswith("https://")
    path = os.path.join(PKI, "key.json")
    with open(path, "w") as f:
        json.dump(key, f)
    os.chmod(path, 0o600)
    emu.configure(require_auth=True)
    try:
        h = httpd_factory("tls-key")
        h.write_config(datos_conf(emu, credentials=path,
                                  extra="DatosCACertificateFile %s\n" % ca, fresh_for="0"))
        h.start()
        emu.clear_counters()
        assert get(h, "/datos").json()["datos"] == expected_answer(rows, 10)
        assert emu.count("oauth2.token") == 1
    finally:
        emu.configure(require_auth=False)


@pytest.mark.parametrize("ca_name", ["ca", "rogue-ca", None], ids=["ca", "other-ca", "system-bundle"])
def test_the_loader_trusts_its_ca_file_and_nothing_else(tls_emulator, ca_name):
    """datos-loader over https with the loader's ca_file: the private CA
    loads the messages; another CA or the system bundle is refused at the
    first call, and nothing is lost."""
    emu, rows, _ = tls_emulator
    make_pipeline(emu)
    now = emu.now()
    ids = emu.publish(PIPELINE["topic"], [json.dumps(
        {"id": "tls-%d" % i, "contenido": "x",
         "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60 - i))})
        for i in range(3)])
    loader = Loader(emu, "tls-" + (ca_name or "bundle"),
                    pubsub_url=emu.base_url, bigquery_url=emu.base_url + "/bigquery/v2",
                    ca_file=os.path.join(PKI, ca_name + ".pem") if ca_name else None,
                    retry_deadline="1s")
    # the https URLs of the file, not the harness's plain-http emulator hosts
    env = {"PUBSUB_EMULATOR_HOST": None, "BIGQUERY_EMULATOR_HOST": None}
    r = loader.run(env=env)
    for _ in range(3):
        # A busy machine can let the handshake outlast the 3 s connect timeout before
        # the certificate is judged; only a verdict on the certificate counts.
        if r.rc == 0 or "SSL connection timeout" not in r.stderr:
            break
        emu.advance_clock(120)
        hold_off = os.path.join(loader.state_dir, "hold-off")
        if os.path.exists(hold_off):
            os.unlink(hold_off)
        r = loader.run(env=env)
    try:
        if ca_name == "ca":
            assert r.rc == 0, r
            assert sorted(x["message_id"] for x in emu.table_rows()) == sorted(ids)
        else:
            assert r.rc != 0, r
            assert "certificate" in r.stderr, r.stderr[-2000:]
            assert emu.table_rows() == []
            emu.advance_clock(120)          # past any lease the failed run could hold
            assert len(emu.pull(PIPELINE["subscription"])) == 3
    finally:
        seed(emu, rows)                     # the table the other tests read
