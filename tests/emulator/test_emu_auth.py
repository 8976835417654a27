"""OAuth2 JWT-bearer token endpoint, metadata server, --require-auth (docs/google-apis.md 3)."""
import base64
import json
import os
import stat
import subprocess
import time
import uuid

import pytest
import requests

from emu_support import TEST_TMP
from gcpemu.client import Emulator

P = "datos-local"
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPE = "https://www.googleapis.com/auth/bigquery"


def b64url(data):
    if isinstance(data, dict):
        data = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(key_info, signing_input):
    """RS256 with the openssl command (PKCS#1 v1.5 over SHA-256)."""
    os.makedirs(TEST_TMP, exist_ok=True)
    pem = os.path.join(TEST_TMP, "sign-%s.pem" % uuid.uuid4().hex)
    fd = os.open(pem, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key_info["private_key"])
    try:
        out = subprocess.run(["openssl", "dgst", "-sha256", "-sign", pem],
                             input=signing_input.encode(), capture_output=True, check=True)
    finally:
        os.unlink(pem)
    return out.stdout


def make_jwt(key_info, header=None, **claims):
    header = header or {"alg": "RS256", "typ": "JWT", "kid": key_info["private_key_id"]}
    si = b64url(header) + "." + b64url(claims)
    return si + "." + b64url(sign(key_info, si))


def assertion_claims(emu, key_info, **over):
    now = int(time.time())
    c = {"iss": key_info["client_email"], "scope": SCOPE, "aud": key_info["token_uri"],
         "iat": now - 10, "exp": now - 10 + 3600}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


@pytest.fixture
def key(emu):
    with open(emu.key_file) as f:
        return json.load(f)


def token_request(api, assertion, grant=GRANT):
    return api.req("POST", "/token", raw={"grant_type": grant, "assertion": assertion},
                   headers={"Content-Type": "application/x-www-form-urlencoded"})


def oauth_error(r, error, description=None):
    assert r.status_code == 400, r.text
    body = r.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    if description:
        assert body["error_description"] == description
    return body


def test_key_file_shape(emu, key):
    st = os.stat(emu.key_file)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert key["type"] == "service_account"
    assert key["project_id"] == P
    assert key["client_email"] == "datos-test@%s.iam.gserviceaccount.com" % P
    assert key["token_uri"] == emu.base_url + "/token"
    assert key["private_key"].startswith("-----BEGIN PRIVATE KEY-----\n")
    for k in ("private_key_id", "client_id", "auth_uri", "universe_domain"):
        assert key[k]
    assert requests.get(emu.base_url + "/_emulator/service-account").json() == key


def test_good_jwt_gets_a_token(api, emu, key):
    r = token_request(api, make_jwt(key, **assertion_claims(emu, key)))
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["access_token", "expires_in", "token_type"]
    assert body["access_token"].startswith("ya29.emu-")
    assert body["expires_in"] == 3599
    assert body["token_type"] == "Bearer"
    assert emu.count("oauth2.token") == 1


def test_bad_signature(api, emu, key):
    good = make_jwt(key, **assertion_claims(emu, key))
    h, c, s = good.split(".")
    forged = h + "." + b64url(assertion_claims(emu, key, scope="x y")) + "." + s
    oauth_error(token_request(api, forged), "invalid_grant", "Invalid JWT Signature.")
    # signed by another key with the same kid
    other = dict(key, private_key=subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        capture_output=True, check=True).stdout.decode())
    oauth_error(token_request(api, make_jwt(other, **assertion_claims(emu, key))),
                "invalid_grant", "Invalid JWT Signature.")
    # wrong kid
    jwt = make_jwt(key, header={"alg": "RS256", "typ": "JWT", "kid": "0" * 40},
                   **assertion_claims(emu, key))
    oauth_error(token_request(api, jwt), "invalid_grant", "Invalid JWT Signature.")


def test_wrong_audience(api, emu, key):
    jwt = make_jwt(key, **assertion_claims(emu, key, aud="https://oauth2.googleapis.com/token"))
    body = oauth_error(token_request(api, jwt), "invalid_grant")
    assert "audience" in body["error_description"]


SKEW = ("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
        "timeframe. Check your iat and exp values in the JWT claim.")


@pytest.mark.parametrize("delta", [
    {"iat": -7200, "exp": -3600},   # expired
    {"iat": 0, "exp": 3601},        # too long-lived
    {"iat": 120, "exp": 3000},      # iat in the future beyond 60 s of skew
    {"iat": 0, "exp": 0},
])
def test_time_checks(api, emu, key, delta):
    now = int(time.time())
    jwt = make_jwt(key, **assertion_claims(emu, key, iat=now + delta["iat"],
                                           exp=now + delta["exp"]))
    oauth_error(token_request(api, jwt), "invalid_grant", SKEW)


def test_time_checks_use_the_wall_clock(api, emu, key):
    # the emulator clock is a server-side clock: moving it does not make a fresh JWT expire
    emu.advance_clock(86400)
    assert token_request(api, make_jwt(key, **assertion_claims(emu, key))).status_code == 200
    now = int(time.time())
    jwt = make_jwt(key, **assertion_claims(emu, key, iat=now + 50, exp=now + 3650))
    assert token_request(api, jwt).status_code == 200  # within 60 s of skew


def test_missing_scope(api, emu, key):
    jwt = make_jwt(key, **assertion_claims(emu, key, scope=None))
    oauth_error(token_request(api, jwt), "invalid_scope")


def test_other_refusals(api, emu, key):
    good = make_jwt(key, **assertion_claims(emu, key))
    oauth_error(token_request(api, good, grant="client_credentials"), "unsupported_grant_type")
    r = api.req("POST", "/token", raw={"grant_type": GRANT},
                headers={"Content-Type": "application/x-www-form-urlencoded"})
    oauth_error(r, "invalid_request")
    oauth_error(token_request(api, "abc.def"), "invalid_grant")
    oauth_error(token_request(api, good + "="), "invalid_grant")  # padded: strict
    unknown = make_jwt(key, **assertion_claims(emu, key, iss="someone@else.iam.gserviceaccount.com"))
    oauth_error(token_request(api, unknown), "invalid_grant", "Invalid grant: account not found")
    none_alg = b64url({"alg": "none", "typ": "JWT"}) + "." + b64url(
        assertion_claims(emu, key)) + "." + b64url(b"x")
    oauth_error(token_request(api, none_alg), "invalid_grant")


def test_metadata_server(api, emu, key):
    base = "/computeMetadata/v1"
    r = api.get(base + "/instance/service-accounts/default/token",
                params={"scopes": SCOPE}, headers={"Metadata-Flavor": "Google"})
    assert r.status_code == 200
    assert r.headers["Metadata-Flavor"] == "Google"
    body = r.json()
    assert set(body) == {"access_token", "expires_in", "token_type"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3599
    r = api.get(base + "/project/project-id", headers={"Metadata-Flavor": "Google"})
    assert r.status_code == 200 and r.text == P
    assert r.headers["Content-Type"].startswith("text/plain")
    r = api.get(base + "/instance/service-accounts/default/email",
                headers={"Metadata-Flavor": "Google"})
    assert r.text == key["client_email"]
    assert api.get(base + "/project/project-id").status_code == 403
    assert api.get(base + "/project/project-id",
                   headers={"Metadata-Flavor": "Other"}).status_code == 403
    assert api.get(base + "/instance/service-accounts/default/token",
                   headers={"Metadata-Flavor": "Google",
                            "X-Forwarded-For": "10.0.0.1"}).status_code == 403
    c = emu.counters()
    assert c["metadata.token"] == 2 and c["metadata.projectId"] == 3 and c["metadata.email"] == 1


def check_401(r, reason):
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    err = r.json()["error"]
    assert err["code"] == 401 and err["status"] == "UNAUTHENTICATED"
    assert err["errors"][0]["reason"] == reason
    assert err["errors"][0]["domain"] == "global"


def test_require_auth(api, emu, key):
    emu.configure(require_auth=True)
    path = "/bigquery/v2/projects/%s/datasets/nope" % P
    check_401(api.get(path), "required")
    check_401(api.get(path, headers={"Authorization": "Bearer ya29.unknown"}), "authError")
    check_401(api.get(path, headers={"Authorization": "Basic abc"}), "authError")
    tok = token_request(api, make_jwt(key, **assertion_claims(emu, key))).json()["access_token"]
    auth = {"Authorization": "Bearer " + tok}
    assert api.get(path, headers=auth).status_code == 404  # authenticated: the real answer
    # control API and the token endpoint never need auth
    assert api.get("/_emulator/health").status_code == 200
    # the token expires on the emulator clock
    emu.advance_clock(3598)
    assert api.get(path, headers=auth).status_code == 404
    emu.advance_clock(2)
    check_401(api.get(path, headers=auth), "authError")
    # a metadata token works too
    md = api.get("/computeMetadata/v1/instance/service-accounts/default/token",
                 headers={"Metadata-Flavor": "Google"}).json()["access_token"]
    assert api.get(path, headers={"Authorization": "Bearer " + md}).status_code == 404
    emu.configure(require_auth=False)
    assert api.get(path).status_code == 404


def test_short_token_lifetime(api, emu, key):
    emu.configure(require_auth=True, token_expires_in=5)
    body = token_request(api, make_jwt(key, **assertion_claims(emu, key))).json()
    assert body["expires_in"] == 5
    path = "/bigquery/v2/projects/%s/datasets/nope" % P
    auth = {"Authorization": "Bearer " + body["access_token"]}
    assert api.get(path, headers=auth).status_code == 404
    emu.advance_clock(5)
    check_401(api.get(path, headers=auth), "authError")


def test_self_signed_jwt(api, emu, key):
    emu.configure(require_auth=True)
    path = "/bigquery/v2/projects/%s/datasets/nope" % P
    now = int(time.time())
    base = {"iss": key["client_email"], "sub": key["client_email"], "iat": now, "exp": now + 3600}
    with_aud = make_jwt(key, aud="https://bigquery.googleapis.com/", **base)
    assert api.get(path, headers={"Authorization": "Bearer " + with_aud}).status_code == 404
    with_scope = make_jwt(key, scope="https://www.googleapis.com/auth/cloud-platform", **base)
    assert api.get(path, headers={"Authorization": "Bearer " + with_scope}).status_code == 404
    wrong_aud = make_jwt(key, aud="https://pubsub.googleapis.com/", **base)
    check_401(api.get(path, headers={"Authorization": "Bearer " + wrong_aud}), "authError")
    expired = make_jwt(key, aud="https://bigquery.googleapis.com/",
                       **dict(base, iat=now - 7200, exp=now - 3600))
    check_401(api.get(path, headers={"Authorization": "Bearer " + expired}), "authError")
    h, c, s = with_aud.split(".")
    tampered = h + "." + b64url(dict(base, aud="https://bigquery.googleapis.com/", exp=now + 60)) \
        + "." + s
    check_401(api.get(path, headers={"Authorization": "Bearer " + tampered}), "authError")


def test_given_key_and_require_auth_flag(emu, key):
    """--service-account-key makes a second emulator trust the first one's key."""
    key_path = os.path.join(TEST_TMP, "given-key.json")
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(key, f)
    other = Emulator(os.path.join(TEST_TMP, "emulator-given-key"), require_auth=True,
                     extra_args=("--service-account-key", key_path))
    other.start()
    try:
        assert other.service_account()["private_key_id"] == key["private_key_id"]
        s = requests.Session()
        claims = {"iss": key["client_email"], "scope": SCOPE, "aud": other.base_url + "/token",
                  "iat": int(time.time()), "exp": int(time.time()) + 3600}
        r = s.post(other.base_url + "/token", data={"grant_type": GRANT,
                                                    "assertion": make_jwt(key, **claims)})
        assert r.status_code == 200, r.text
        path = other.base_url + "/bigquery/v2/projects/%s/datasets/x" % P
        assert s.get(path).status_code == 401
        assert s.get(path, headers={"Authorization": "Bearer " + r.json()["access_token"]}
                     ).status_code == 404
    finally:
        other.stop()


def test_harness_seeds_under_require_auth(emu):
    emu.configure(require_auth=True)
    emu.create_dataset("latam_dataset")
    emu.create_datos_table()
    emu.insert_rows([{"id": "a", "timestamp": "2024-01-14T14:00:00Z"}])
    r = emu.query("SELECT id FROM `latam_dataset.datos`")
    assert r["rows"] == [{"f": [{"v": "a"}]}]
    c = emu.counters()
    assert "oauth2.token" not in c and "metadata.token" not in c
    assert all(q["headers"]["Authorization"].startswith("Bearer ey") for q in emu.requests())


def test_token_store_stays_bounded_and_fast_when_full():
    """A load test that mints a token per request must not slow the token
    endpoint down: past the cap the oldest tokens are dropped in bulk."""
    from gcpemu.auth import TokenStore
    from gcpemu.clock import Clock

    class Small(TokenStore):
        MAX_TOKENS = 1000

    store = Small(Clock())
    first = store.issue("a@b", ["s"], 3600)
    issued = [store.issue("a@b", ["s"], 3600) for _ in range(5000)]
    assert len(store._tokens) <= Small.MAX_TOKENS
    assert store.lookup(first) is None           # the oldest went first
    assert store.lookup(issued[-1]) is not None  # the newest are kept


# refresh-token grant (authorized_user credentials, docs/google-apis.md 3.5) ---------------------------

def refresh(api, user, **over):
    form = {"grant_type": "refresh_token", "client_id": user["client_id"],
            "client_secret": user["client_secret"], "refresh_token": user["refresh_token"]}
    form.update(over)
    form = {k: v for k, v in form.items() if v is not None}
    return api.req("POST", "/token", raw=form,
                   headers={"Content-Type": "application/x-www-form-urlencoded"})


def test_authorized_user_credentials(emu):
    user = emu.authorized_user()
    assert set(user) == {"account", "client_id", "client_secret", "quota_project_id",
                         "refresh_token", "token_uri", "type", "universe_domain"}
    assert user["type"] == "authorized_user"
    assert user["client_id"].endswith(".apps.googleusercontent.com")
    assert user["token_uri"] == emu.base_url + "/token"
    assert user["quota_project_id"] == P
    assert emu.authorized_user() == user  # stable
    path = os.path.join(TEST_TMP, "adc.json")
    emu.write_authorized_user(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path) as f:
        assert json.load(f) == user


def test_refresh_token_grant(api, emu):
    user = emu.authorized_user()
    r = refresh(api, user)
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["access_token", "expires_in", "scope", "token_type"]
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3599
    assert "https://www.googleapis.com/auth/cloud-platform" in body["scope"].split()
    assert r.headers["Cache-Control"].startswith("no-cache")
    assert emu.count("oauth2.token") == 1
    # the token works for BigQuery and Pub/Sub under --require-auth, until it expires
    emu.configure(require_auth=True, token_expires_in=60)
    tok = refresh(api, user, scope="https://www.googleapis.com/auth/bigquery").json()
    assert tok["scope"] == "https://www.googleapis.com/auth/bigquery"
    auth = {"Authorization": "Bearer " + tok["access_token"]}
    assert api.get("/bigquery/v2/projects/%s/datasets/nope" % P, headers=auth).status_code == 404
    assert api.get("/v1/projects/%s/topics/nope" % P, headers=auth).status_code == 404
    emu.advance_clock(60)
    check_401(api.get("/bigquery/v2/projects/%s/datasets/nope" % P, headers=auth), "authError")
    # client authentication by HTTP Basic works as well as form fields
    basic = base64.b64encode(("%s:%s" % (user["client_id"], user["client_secret"])).encode())
    r = api.req("POST", "/token", raw={"grant_type": "refresh_token",
                                       "refresh_token": user["refresh_token"]},
                headers={"Content-Type": "application/x-www-form-urlencoded",
                         "Authorization": "Basic " + basic.decode()})
    assert r.status_code == 200, r.text


def test_refresh_token_grant_errors(api, emu):
    user = emu.authorized_user()

    def oauth(r, code, error, description):
        assert r.status_code == code, r.text
        assert r.json() == {"error": error, "error_description": description}

    oauth(refresh(api, user, client_id="someone.apps.googleusercontent.com"), 401,
          "invalid_client", "The OAuth client was not found.")
    oauth(refresh(api, user, client_id=None), 401, "invalid_client",
          "The OAuth client was not found.")
    oauth(refresh(api, user, client_secret="GOCSPX-wrong"), 401, "invalid_client",
          "Unauthorized")
    oauth(refresh(api, user, refresh_token="1//0eforged"), 400, "invalid_grant", "Bad Request")
    oauth(refresh(api, user, refresh_token=None), 400, "invalid_request",
          "Missing required parameter: refresh_token")
    # revoking (what a new `gcloud auth application-default login` does) kills the old token
    fresh = emu.revoke_authorized_user()
    assert fresh["refresh_token"] != user["refresh_token"]
    assert fresh["client_id"] == user["client_id"]
    oauth(refresh(api, user), 400, "invalid_grant", "Token has been expired or revoked.")
    assert refresh(api, fresh).status_code == 200
    emu.reset()  # back to the start-up credentials
    assert emu.authorized_user() == user
    assert refresh(api, user).status_code == 200


def test_write_authorized_user_flag(emu):
    path = os.path.join(TEST_TMP, "adc-flag.json")
    other = Emulator(os.path.join(TEST_TMP, "emulator-adc-flag"),
                     extra_args=("--write-authorized-user", path))
    other.start()
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with open(path) as f:
            user = json.load(f)
        assert user == other.authorized_user()
        r = requests.post(user["token_uri"], data={
            "grant_type": "refresh_token", "client_id": user["client_id"],
            "client_secret": user["client_secret"], "refresh_token": user["refresh_token"]})
        assert r.status_code == 200 and r.json()["access_token"].startswith("ya29.")
    finally:
        other.stop()


def test_metadata_answers_all_carry_metadata_flavor(api):
    base = "/computeMetadata/v1"
    for path, headers, code in [
            (base + "/instance/service-accounts/default/token", {"Metadata-Flavor": "Google"},
             200),
            (base + "/project/project-id", {"Metadata-Flavor": "Google"}, 200),
            (base + "/project/project-id", {}, 403),
            (base + "/instance/service-accounts/default/token",
             {"Metadata-Flavor": "Google", "X-Forwarded-For": "10.0.0.1"}, 403),
            (base + "/instance/nothing-here", {"Metadata-Flavor": "Google"}, 404)]:
        r = api.get(path, headers=headers)
        assert r.status_code == code, (path, r.text)
        assert r.headers["Metadata-Flavor"] == "Google", path
