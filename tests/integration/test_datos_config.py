"""Every directive value is checked while the configuration is read:
`apache2 -t` fails with a message naming the directive."""
import grp
import json
import os
import pwd
import subprocess

import pytest

from datos_env import HANDLERS
from tools.httpd import REPO_ROOT

GOOD = """
DatosProject datos-local
DatosTable latam_dataset.datos
DatosCredentials none
DatosBigQueryURL http://127.0.0.1:9/bigquery/v2
""" + HANDLERS


@pytest.fixture(scope="module")
def checker(request):
    from tools.httpd import Httpd
    h = Httpd("datos-config")

    def check(extra, base=GOOD):
        h.write_config(base + "\n" + extra + "\n")
        return h.configtest()
    check.httpd = h
    return check


def test_good_configuration_passes(checker):
    rc, out = checker("")
    assert rc == 0, out
    assert "Syntax OK" in out


def make_ca(root):
    """A real self-signed certificate: DatosCACertificateFile must hold one."""
    ca = os.path.join(root, "ca.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=datos config test", "-keyout", os.path.join(root, "ca.key"),
                    "-out", ca], check=True, capture_output=True)
    os.chmod(ca, 0o644)
    return ca


def test_every_directive_with_a_good_value_passes(checker):
    ca = make_ca(checker.httpd.root)
    rc, out = checker("\n".join([
        "DatosTable other-project.some_dataset.Some_Table_1",
        "DatosLocation southamerica-east1",
        "DatosAllowInsecureHTTP Off",
        "DatosCACertificateFile %s" % ca,
        "DatosLimit 20 500",
        "DatosTimeout 2500ms",
        "DatosLookback 14d",
        "DatosMaxBytesBilled 1G",
        "DatosMaxPayload 2M",
        "DatosKeepAliveLinger 250ms",
    ]))
    assert rc == 0, out


BAD = [
    ("DatosProject", "DatosProject Bad_Project"),
    ("DatosProject", "DatosProject abc"),
    ("DatosProject", "DatosProject 1project"),
    ("DatosProject", "DatosProject project-"),
    ("DatosTable", "DatosTable datos"),
    ("DatosTable", "DatosTable a.b.c.d"),
    ("DatosTable", "DatosTable `latam_dataset.datos`"),
    ("DatosTable", "DatosTable latam_dataset.datos;DROP"),
    ("DatosTable", "DatosTable Upper-Project.ds.t"),
    ("DatosTable", "DatosTable latam-dataset.datos"),
    ("DatosLocation", "DatosLocation us/east"),
    ("DatosLocation", "DatosLocation x"),
    ("DatosCredentials", "DatosCredentials /nonexistent/key.json"),
    ("DatosBigQueryURL", "DatosBigQueryURL ftp://bigquery.googleapis.com/bigquery/v2"),
    ("DatosBigQueryURL", "DatosBigQueryURL bigquery.googleapis.com"),
    ("DatosAllowInsecureHTTP", "DatosAllowInsecureHTTP maybe"),
    ("DatosBigQueryURL", "DatosBigQueryURL http://127.0.0.1:99999999999/bigquery/v2"),
    ("DatosBigQueryURL", "DatosBigQueryURL http://127.0.0.1:0/bigquery/v2"),
    ("DatosBigQueryURL", "DatosBigQueryURL http://127.0.0.1:65536/bigquery/v2"),
    ("DatosBigQueryURL", "DatosBigQueryURL http://127.0.0.1:/bigquery/v2"),
    ("DatosBigQueryURL", "DatosBigQueryURL http://[127.0.0.1]:9/bigquery/v2"),
    ("DatosCACertificateFile", "DatosCACertificateFile /nonexistent/ca.pem"),
    ("DatosCACertificateFile", "DatosCACertificateFile ${root}/conf"),
    ("DatosCACertificateFile", "DatosCACertificateFile ${root}/conf/httpd.conf"),
    ("DatosLimit", "DatosLimit 0"),
    ("DatosLimit", "DatosLimit ten"),
    ("DatosLimit", "DatosLimit 50 20"),
    ("DatosLimit", "DatosLimit 10 1000000"),
    ("DatosLimit", "DatosLimit 10 -5"),
    ("DatosTimeout", "DatosTimeout 0"),
    ("DatosTimeout", "DatosTimeout 5x"),
    ("DatosTimeout", "DatosTimeout 10m"),
    ("DatosTimeout", "DatosTimeout -1s"),
    ("DatosLookback", "DatosLookback 0"),
    ("DatosLookback", "DatosLookback 36h"),
    ("DatosLookback", "DatosLookback week"),
    ("DatosMaxBytesBilled", "DatosMaxBytesBilled 1M"),
    ("DatosMaxBytesBilled", "DatosMaxBytesBilled lots"),
    ("DatosMaxPayload", "DatosMaxPayload 10"),
    ("DatosMaxPayload", "DatosMaxPayload 1T"),
    ("DatosKeepAliveLinger", "DatosKeepAliveLinger 2s"),
    ("DatosKeepAliveLinger", "DatosKeepAliveLinger -1ms"),
    ("DatosKeepAliveLinger", "DatosKeepAliveLinger soon"),
]


@pytest.mark.parametrize("directive,line", BAD, ids=[l for _, l in BAD])
def test_bad_value_fails_naming_the_directive(checker, directive, line):
    rc, out = checker(line)
    assert rc != 0, out
    assert directive in out, out


@pytest.mark.parametrize("line", ["DatosMaxBytesBilled 10MB", "DatosMaxBytesBilled 10485760",
                                  "DatosMaxBytesBilled off", "DatosLookback 168h",
                                  "DatosLookback 7", "DatosTimeout 5", "DatosLimit 25",
                                  "DatosKeepAliveLinger 0", "DatosKeepAliveLinger 1s",
                                  "DatosKeepAliveLinger 3"])
def test_other_accepted_spellings(checker, line):
    rc, out = checker(line)
    assert rc == 0, out


def test_plain_http_to_a_remote_host_needs_the_explicit_opt_in(checker):
    base = GOOD.replace("http://127.0.0.1:9", "http://bigquery.example.com")
    rc, out = checker("", base=base)
    assert rc != 0
    assert "DatosBigQueryURL" in out and "DatosAllowInsecureHTTP" in out
    rc, out = checker("DatosAllowInsecureHTTP On", base=base)
    assert rc == 0, out


def test_credentials_none_needs_a_project(checker):
    rc, out = checker("", base=GOOD.replace("DatosProject datos-local\n", ""))
    assert rc != 0
    assert "DatosProject" in out


def test_directives_are_refused_inside_a_location(checker):
    rc, out = checker('<Location "/x">\n  DatosLimit 5 10\n</Location>')
    assert rc != 0
    assert "DatosLimit" in out


def test_virtual_host_may_serve_another_table(checker):
    rc, out = checker("<VirtualHost 127.0.0.1:*>\n  DatosTable other_dataset.other\n  DatosLimit 5 50\n</VirtualHost>")
    assert rc == 0, out


# Values that look plausible but could never work: refused by `apache2 -t`
# with what is wrong, and without pointing at DatosAllowInsecureHTTP, which
# would not help.
UNWORKABLE = [
    ("DatosBigQueryURL http://127.0.0.1:99999999999/bigquery/v2", "DatosBigQueryURL", "1 to 65535"),
    ("DatosBigQueryURL https://bigquery.googleapis.com:0/bigquery/v2", "DatosBigQueryURL", "1 to 65535"),
    ("DatosBigQueryURL http://[127.0.0.1]:9/bigquery/v2", "DatosBigQueryURL", "IPv6"),
    ("DatosBigQueryURL https://user@bigquery.googleapis.com/bigquery/v2", "DatosBigQueryURL",
     "credentials"),
    ("DatosBigQueryURL http://user:pw@bigquery.example.com/bigquery/v2", "DatosBigQueryURL",
     "credentials"),
    ("DatosBigQueryURL http:///bigquery/v2", "DatosBigQueryURL", "no host"),
    ("DatosCACertificateFile ${root}/conf", "DatosCACertificateFile", "not a regular file"),
    ("DatosCACertificateFile ${root}/conf/httpd.conf", "DatosCACertificateFile",
     "no PEM certificate"),
]


@pytest.mark.parametrize("line,directive,why", UNWORKABLE, ids=[l for l, _, _ in UNWORKABLE])
def test_unworkable_value_fails_saying_why(checker, line, directive, why):
    rc, out = checker(line)
    assert rc != 0, out
    assert directive + ":" in out and why in out, out
    assert "DatosAllowInsecureHTTP" not in out, out


# --------------------------------------------------------------- key files

KEY_PEM = os.path.join(REPO_ROOT, "tests", "unit", "data", "test_key.pem")
NOBODY = 65534


def needs_root():
    if os.geteuid() != 0:
        pytest.skip("a key owned by another user needs root to make")


def write_key(checker, name, uid=0, **changes):
    """A service-account key for the committed test key, mode 0600."""
    with open(KEY_PEM) as f:
        pem = f.read()
    key = {"type": "service_account", "project_id": "datos-local",
           "private_key_id": "0123456789abcdef", "private_key": pem,
           "client_email": "reader@datos-local.iam.gserviceaccount.com"}
    key.update(changes)
    keys = checker.httpd.path("keys")
    os.makedirs(keys, mode=0o755, exist_ok=True)
    path = os.path.join(keys, name)
    if os.path.lexists(path):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(key, f)
    os.chmod(path, 0o600)
    if uid != os.geteuid():
        os.chown(path, uid, uid)
    return path


def owner_text(uid):
    return "%s (uid %d)" % (pwd.getpwuid(uid).pw_name, uid)


def test_key_owned_by_the_children_user_fails_the_config_test(checker):
    needs_root()
    good = write_key(checker, "root.json")
    rc, out = checker("DatosCredentials %s" % good)
    assert rc == 0, out
    path = write_key(checker, "nobody.json", uid=NOBODY)
    rc, out = checker("DatosCredentials %s" % path)
    assert rc != 0, out
    assert "DatosCredentials:" in out and path in out, out
    assert "owned by " + owner_text(NOBODY) in out, out


def test_key_behind_a_symlink_is_judged_by_its_target(checker):
    needs_root()
    good = write_key(checker, "target-root.json")
    bad = write_key(checker, "target-nobody.json", uid=NOBODY)
    links = {}
    for name, target in (("good-link.json", good), ("bad-link.json", bad)):
        links[name] = checker.httpd.path("keys", name)
        if os.path.lexists(links[name]):
            os.unlink(links[name])
        os.symlink(target, links[name])
    rc, out = checker("DatosCredentials %s" % links["good-link.json"])
    assert rc == 0, out
    rc, out = checker("DatosCredentials %s" % links["bad-link.json"])
    assert rc != 0, out
    assert "DatosCredentials:" in out and "owned by " + owner_text(NOBODY) in out, out


def test_application_default_key_owned_by_the_children_user_is_refused(checker):
    needs_root()
    from tools.httpd import Httpd
    base = GOOD.replace("DatosCredentials none\n", "")
    good = write_key(checker, "adc-root.json")
    bad = write_key(checker, "adc-nobody.json", uid=NOBODY)
    h = Httpd("datos-config-adc", env={"GOOGLE_APPLICATION_CREDENTIALS": good})
    h.write_config(base)
    rc, out = h.configtest()
    assert rc == 0, out
    h = Httpd("datos-config-adc", env={"GOOGLE_APPLICATION_CREDENTIALS": bad})
    h.write_config(base)
    rc, out = h.configtest()
    assert rc != 0, out
    assert "GOOGLE_APPLICATION_CREDENTIALS" in out and bad in out, out
    assert "owned by " + owner_text(NOBODY) in out, out


def test_token_uri_hint_only_when_insecure_http_would_help(checker):
    path = write_key(checker, "plain-http-token-uri.json", token_uri="http://oauth.example.com/token")
    rc, out = checker("DatosCredentials %s" % path)
    assert rc != 0, out
    assert "DatosCredentials:" in out and "DatosAllowInsecureHTTP On" in out, out
    rc, out = checker("DatosCredentials %s\nDatosAllowInsecureHTTP On" % path)
    assert rc == 0, out
    path = write_key(checker, "userinfo-token-uri.json",
                     token_uri="https://user@oauth2.googleapis.com/token")
    rc, out = checker("DatosCredentials %s" % path)
    assert rc != 0, out
    assert "DatosCredentials:" in out and "token_uri" in out, out
    assert "DatosAllowInsecureHTTP" not in out and "insecure" not in out, out


def test_ca_file_the_children_cannot_read_fails_the_config_test(checker):
    """curl reads the bundle in the children, as User: a root-only copy would
    fail every https request."""
    needs_root()
    ca = make_ca(checker.httpd.root)
    rc, out = checker("DatosCACertificateFile %s" % ca)
    assert rc == 0, out
    os.chmod(ca, 0o600)
    rc, out = checker("DatosCACertificateFile %s" % ca)
    assert rc != 0, out
    assert "DatosCACertificateFile:" in out and ca in out, out
    assert "cannot be read by nobody (uid %d)" % NOBODY in out, out
    # readable through the Group the children run as (nogroup) is enough
    os.chown(ca, 0, grp.getgrnam("nogroup").gr_gid)
    os.chmod(ca, 0o640)
    rc, out = checker("DatosCACertificateFile %s" % ca)
    assert rc == 0, out
