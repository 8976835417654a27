"""OAuth2 token endpoint (JWT-bearer and refresh-token grants), GCE metadata server, and
bearer-token checks for --require-auth (docs/google-apis.md 3.2-3.5, 3.7, 6).

The refresh-token grant serves one `authorized_user` (what `gcloud auth
application-default login` leaves in application_default_credentials.json): its client id,
client secret and refresh token derive from the trusted service-account key, so they stay
the same across restarts with the same key.

Two clocks on purpose. A JWT *assertion* (or a self-signed JWT used as a bearer token) is
minted by the client from its own clock, so its iat/exp are checked against the real wall
clock: moving the emulator clock must not make a correctly-minted JWT look forged. The
access tokens this emulator issues expire on the emulator clock, because their lifetime is
server-side state: advancing the clock is how tests make a token expire without waiting.
"""
import base64
import hashlib
import json
import itertools
import secrets
import threading
import time
import urllib.parse

from . import keys
from .errors import ApiError, OAuthError, RawError, DEFAULT_MESSAGES
from .http import Response, json_bytes

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
REFRESH = "refresh_token"
USER_EMAIL = "datos-developer@example.com"
USER_SCOPES = ("openid https://www.googleapis.com/auth/userinfo.email "
               "https://www.googleapis.com/auth/cloud-platform")
SKEW_TEXT = ("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
             "timeframe. Check your iat and exp values in the JWT claim.")
MAX_LIFETIME = 3600
MAX_FUTURE_IAT = 60
# Audiences a self-signed JWT may carry, per API family (docs/google-apis.md 3.3).
SELF_SIGNED_AUDIENCES = {
    "bigquery": ("https://bigquery.googleapis.com/", "https://bigquery.googleapis.com"),
    "pubsub": ("https://pubsub.googleapis.com/", "https://pubsub.googleapis.com"),
}
NO_STORE = {"Cache-Control": "no-cache, no-store, max-age=0, must-revalidate",
            "Pragma": "no-cache"}


class TokenStore:
    # Bounds memory under load tests that mint a token per request. Dicts keep
    # insertion order, so the first entries are the oldest (the soonest to
    # expire): dropping the oldest tenth when full costs O(1) per issued token,
    # where rebuilding the store on every issue made the endpoint crawl. A
    # client holding a dropped token gets a 401 and refreshes, as with Google.
    MAX_TOKENS = 100_000

    def __init__(self, clock):
        self.clock = clock
        self._tokens = {}
        self._lock = threading.Lock()

    def issue(self, email, scopes, expires_in):
        token = "ya29.emu-" + secrets.token_urlsafe(48)
        with self._lock:
            if len(self._tokens) >= self.MAX_TOKENS:
                for key in list(itertools.islice(self._tokens, self.MAX_TOKENS // 10)):
                    del self._tokens[key]
            self._tokens[token] = (self.clock.now() + expires_in, email, scopes)
        return token

    def lookup(self, token):
        with self._lock:
            return self._tokens.get(token)

    def clear(self):
        with self._lock:
            self._tokens.clear()


class Auth:
    def __init__(self, app):
        self.app = app
        self.tokens = TokenStore(app.clock)
        self._user_lock = threading.Lock()
        self.reset_user()

    def reset(self):
        self.tokens.clear()
        self.reset_user()

    # authorized_user credentials ----------------------------------------------------------

    def reset_user(self):
        seed = hashlib.sha256(("datos-emulator-authorized-user|%s|%s" % (
            self.app.key_info.get("private_key_id"), self.app.key_info.get("client_email"))
        ).encode()).digest()
        digits = str(int.from_bytes(seed[:6], "big") % 10 ** 12).rjust(12, "0")
        letters = "".join("abcdefghijklmnopqrstuvwxyz0123456789"[b % 36] for b in seed[6:38])
        with self._user_lock:
            self.client_id = "%s-%s.apps.googleusercontent.com" % (digits, letters)
            self.client_secret = "GOCSPX-" + base64.urlsafe_b64encode(
                hashlib.sha256(seed + b"secret").digest()[:21]).decode()
            self.refresh_tokens = {"1//0e" + base64.urlsafe_b64encode(
                hashlib.sha256(seed + b"refresh").digest()).decode().rstrip("=")}
            self.revoked = set()
            self.current_refresh = next(iter(self.refresh_tokens))

    def authorized_user(self):
        """The application_default_credentials.json of the emulator's authorized user."""
        with self._user_lock:
            return {"account": "", "client_id": self.client_id,
                    "client_secret": self.client_secret,
                    "quota_project_id": self.app.project,
                    "refresh_token": self.current_refresh,
                    "token_uri": self.app.token_url,
                    "type": "authorized_user", "universe_domain": "googleapis.com"}

    def revoke_user(self):
        """Revoke the current refresh token and issue a new one (what a new `gcloud auth
        application-default login` does)."""
        with self._user_lock:
            self.refresh_tokens.discard(self.current_refresh)
            self.revoked.add(self.current_refresh)
            self.current_refresh = "1//0e" + secrets.token_urlsafe(48)
            self.refresh_tokens.add(self.current_refresh)
        return self.authorized_user()

    def refresh_grant(self, req, form):
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = req.header("Authorization") or ""
        if basic.lower().startswith("basic "):
            try:
                pair = base64.b64decode(basic[6:].strip()).decode("utf-8")
                cid, _, secret = pair.partition(":")
                client_id = client_id or urllib.parse.unquote(cid)
                client_secret = client_secret or urllib.parse.unquote(secret)
            except (ValueError, UnicodeDecodeError):
                raise OAuthError("invalid_request", "Invalid client authentication header.")
        token = form.get("refresh_token")
        if not token:
            raise OAuthError("invalid_request", "Missing required parameter: refresh_token")
        with self._user_lock:
            if client_id != self.client_id:
                raise OAuthError("invalid_client", "The OAuth client was not found.", 401)
            if client_secret != self.client_secret:
                raise OAuthError("invalid_client", "Unauthorized", 401)
            if token in self.revoked:
                raise OAuthError("invalid_grant", "Token has been expired or revoked.")
            if token not in self.refresh_tokens:
                raise OAuthError("invalid_grant", "Bad Request")
        scope = form.get("scope") or USER_SCOPES
        expires_in = int(self.app.settings["token_expires_in"])
        access = self.tokens.issue(USER_EMAIL, scope.split(), expires_in)
        body = {"access_token": access, "expires_in": expires_in, "scope": scope,
                "token_type": "Bearer"}
        return Response(200, json_bytes(body), "application/json; charset=utf-8", NO_STORE)

    # JWT ------------------------------------------------------------------------------------

    def decode_jwt(self, jwt):
        """-> (header, claims, signing_input, signature); raises ValueError."""
        parts = jwt.split(".")
        if len(parts) != 3 or not all(parts):
            raise ValueError("not three parts")
        header = json.loads(keys.b64url_decode(parts[0]))
        claims = json.loads(keys.b64url_decode(parts[1]))
        sig = keys.b64url_decode(parts[2])
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise ValueError("not JSON objects")
        return header, claims, (parts[0] + "." + parts[1]).encode("ascii"), sig

    def key_for_email(self, email):
        for k in self.app.trusted_keys:
            if k.email == email:
                return k
        return None

    def key_for_kid(self, kid):
        for k in self.app.trusted_keys:
            if k.key_id == kid:
                return k
        return None

    @staticmethod
    def _times_ok(claims, now):
        iat, exp = claims.get("iat"), claims.get("exp")
        for v in (iat, exp):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return False
        if iat > now + MAX_FUTURE_IAT:
            return False
        if exp <= now:
            return False
        if exp - iat > MAX_LIFETIME or exp < iat:
            return False
        return True

    # POST /token --------------------------------------------------------------------------

    def token_endpoint(self, req):
        ctype = (req.header("Content-Type") or "").split(";")[0].strip().lower()
        try:
            form = urllib.parse.parse_qs(req.body.decode("utf-8"), keep_blank_values=True,
                                         strict_parsing=False)
        except UnicodeDecodeError:
            raise OAuthError("invalid_request", "Invalid request body.")
        if ctype and ctype != "application/x-www-form-urlencoded":
            raise OAuthError("invalid_request",
                             "Request content type must be application/x-www-form-urlencoded.")
        form = {k: v[0] for k, v in form.items()}
        grant = form.get("grant_type")
        if not grant:
            raise OAuthError("unsupported_grant_type", "Invalid grant_type: ")
        if grant == REFRESH:
            return self.refresh_grant(req, form)
        if grant != JWT_BEARER:
            # client_credentials, authorization_code, token exchange... are not emulated.
            raise OAuthError("unsupported_grant_type", "Invalid grant_type: %s" % grant)
        assertion = form.get("assertion")
        if not assertion:
            raise OAuthError("invalid_request", "Missing required parameter: assertion")
        try:
            header, claims, signing_input, sig = self.decode_jwt(assertion)
        except (ValueError, UnicodeDecodeError):
            raise OAuthError("invalid_grant", "Invalid JWT: malformed assertion (expected three "
                                              "unpadded base64url parts with JSON header and "
                                              "claims).")
        if header.get("alg") != "RS256":
            raise OAuthError("invalid_grant", "Invalid JWT: unsupported signing algorithm %r "
                                              "(RS256 required)." % header.get("alg"))
        if "typ" in header and header.get("typ") != "JWT":
            raise OAuthError("invalid_grant", "Invalid JWT: typ must be JWT.")
        key = self.key_for_email(claims.get("iss"))
        if key is None:
            raise OAuthError("invalid_grant", "Invalid grant: account not found")
        # Stricter than Google, which can try every key of the account: the kid must name
        # the key that signed.
        if header.get("kid") != key.key_id or not keys.rs256_verify(key.n, key.e, signing_input,
                                                                    sig):
            raise OAuthError("invalid_grant", "Invalid JWT Signature.")
        aud = claims.get("aud")
        if aud != self.app.token_url:
            raise OAuthError("invalid_grant", "Invalid JWT: Failed audience check. The right "
                                              "audience is %s" % self.app.token_url)
        scope = claims.get("scope")
        if not isinstance(scope, str) or not scope.strip():
            raise OAuthError("invalid_scope", "Empty or missing scope not allowed.")
        if not self._times_ok(claims, time.time()):
            raise OAuthError("invalid_grant", SKEW_TEXT)
        expires_in = int(self.app.settings["token_expires_in"])
        token = self.tokens.issue(key.email, scope.split(), expires_in)
        body = {"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}
        return Response(200, json_bytes(body), "application/json; charset=utf-8", NO_STORE)

    # metadata server -----------------------------------------------------------------------

    def metadata_check(self, req):
        if "X-Forwarded-For" in req.headers:
            raise RawError(403, "Request had X-Forwarded-For header: refused by the metadata "
                                "server.\n", headers={"Metadata-Flavor": "Google"})
        if req.header("Metadata-Flavor") != "Google":
            raise RawError(403, "Missing required header: Metadata-Flavor: Google\n",
                           headers={"Metadata-Flavor": "Google"})

    def metadata_token(self, req):
        self.metadata_check(req)
        key = self.app.trusted_keys[0]
        scopes = req.query.get("scopes", "https://www.googleapis.com/auth/cloud-platform")
        expires_in = int(self.app.settings["token_expires_in"])
        token = self.tokens.issue(key.email, scopes.split(","), expires_in)
        body = {"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}
        return Response(200, json_bytes(body), "application/json",
                        {"Metadata-Flavor": "Google"})

    def metadata_text(self, req, text):
        self.metadata_check(req)
        return Response(200, text, "text/plain; charset=utf-8", {"Metadata-Flavor": "Google"})

    # API bearer check ----------------------------------------------------------------------

    def check_bearer(self, req, family):
        """Raise a 401 ApiError unless the request carries an acceptable credential."""
        value = req.header("Authorization")
        if not value:
            raise unauthenticated("required")
        scheme, _, token = value.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthenticated("authError")
        entry = self.tokens.lookup(token)
        if entry is not None:
            if entry[0] <= self.app.clock.now():
                raise unauthenticated("authError")
            return entry[1]
        if token.count(".") == 2:
            email = self.check_self_signed(token, family)
            if email:
                return email
        raise unauthenticated("authError")

    def check_self_signed(self, token, family):
        try:
            header, claims, signing_input, sig = self.decode_jwt(token)
        except (ValueError, UnicodeDecodeError):
            return None
        if header.get("alg") != "RS256" or header.get("typ", "JWT") != "JWT":
            return None
        key = self.key_for_kid(header.get("kid"))
        if key is None or not keys.rs256_verify(key.n, key.e, signing_input, sig):
            return None
        if claims.get("iss") != key.email or claims.get("sub", key.email) != key.email:
            return None
        aud_ok = claims.get("aud") in SELF_SIGNED_AUDIENCES.get(family, ())
        scope = claims.get("scope")
        scope_ok = isinstance(scope, str) and bool(scope.strip())
        if not (aud_ok or scope_ok):
            return None
        if not self._times_ok(claims, time.time()):
            return None
        return key.email


def unauthenticated(reason):
    # [mem] texts and WWW-Authenticate values as commonly seen from Google front ends.
    if reason == "required":
        return ApiError(401, DEFAULT_MESSAGES["required"], "required", location="Authorization",
                        location_type="header", error_message="Login Required.",
                        headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
    return ApiError(401, DEFAULT_MESSAGES["authError"], "authError", location="Authorization",
                    location_type="header", error_message="Invalid Credentials",
                    headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", '
                                                 'error="invalid_token"'})
