"""Google error envelopes (docs/google-apis.md 0.4, 2.10, 3.2).

BigQuery ("Apiary" style) errors carry `errors[]` with `message`, `domain`, `reason`;
Pub/Sub errors carry only `code`, `message`, `status`. OAuth errors use the OAuth shape
`{"error": ..., "error_description": ...}`.
"""

# HTTP code -> canonical status name (google/rpc/code.proto mapping, docs/google-apis.md 0.4).
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    416: "OUT_OF_RANGE",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# Reason used when a fault or handler gives only an HTTP code (docs/google-apis.md 2.10).
DEFAULT_REASONS = {
    400: "invalid",
    401: "authError",
    403: "accessDenied",
    404: "notFound",
    405: "notFound",
    409: "duplicate",
    412: "conditionNotMet",
    429: "rateLimitExceeded",
    500: "internalError",
    501: "notImplemented",
    502: "badGateway",
    503: "backendError",
    504: "timeout",
}

# Reasons that live in the `usageLimits` domain rather than `global`.
USAGE_LIMIT_REASONS = {"rateLimitExceeded", "quotaExceeded", "userRateLimitExceeded",
                       "dailyLimitExceeded"}

# Default human texts for reasons a fault may name without a message. Texts marked [mem] in
# docs/google-apis.md; clients must never parse them.
DEFAULT_MESSAGES = {
    "rateLimitExceeded": "Exceeded rate limits: too many api requests per user per method for "
                         "this user_method. For more information, see "
                         "https://cloud.google.com/bigquery/docs/troubleshoot-quotas",
    "quotaExceeded": "Quota exceeded: Your project exceeded quota for free query bytes scanned. "
                     "For more information, see "
                     "https://cloud.google.com/bigquery/docs/troubleshoot-quotas",
    "backendError": "Error encountered during execution. Retrying may solve the problem.",
    "internalError": "An internal error occurred and the request could not be completed. "
                     "Error: 7906600",
    "badGateway": "Bad Gateway",
    "timeout": "Deadline exceeded",
    "accessDenied": "Access Denied: the caller does not have permission",
    "notFound": "Not found",
    "duplicate": "Already Exists",
    "invalid": "Invalid request",
    "authError": "Request had invalid authentication credentials. Expected OAuth 2 access "
                 "token, login cookie or other valid authentication credential. See "
                 "https://developers.google.com/identity/sign-in/web/devconsole-project.",
    "required": "Request is missing required authentication credential. Expected OAuth 2 "
                "access token, login cookie or other valid authentication credential. See "
                "https://developers.google.com/identity/sign-in/web/devconsole-project.",
    "notImplemented": "Not implemented",
}


def status_name(code):
    return STATUS_NAMES.get(int(code), "UNKNOWN")


def domain_for(reason):
    return "usageLimits" if reason in USAGE_LIMIT_REASONS else "global"


def bigquery_envelope(code, message, reason=None, domain=None, status=None, location=None,
                      location_type=None, error_message=None):
    """The exact BigQuery envelope of docs/google-apis.md 0.4 / 2.10."""
    reason = reason or DEFAULT_REASONS.get(code, "invalid")
    item = {"message": message if error_message is None else error_message,
            "domain": domain or domain_for(reason),
            "reason": reason}
    if location is not None:
        item["location"] = location
    if location_type is not None:
        item["locationType"] = location_type
    return {"error": {"code": code, "message": message, "errors": [item],
                      "status": status or status_name(code)}}


def plain_envelope(code, message, status=None):
    """Pub/Sub style: no errors[] (docs/google-apis.md 1.9)."""
    return {"error": {"code": code, "message": message, "status": status or status_name(code)}}


class ApiError(Exception):
    """An error answered with the Google JSON envelope."""

    def __init__(self, code, message, reason=None, domain=None, status=None, headers=None,
                 location=None, location_type=None, error_message=None):
        super().__init__(message)
        self.code = int(code)
        self.message = message
        self.reason = reason or DEFAULT_REASONS.get(self.code, "invalid")
        self.domain = domain
        self.status = status
        self.headers = dict(headers or {})
        self.location = location
        self.location_type = location_type
        self.error_message = error_message

    def envelope(self, style="bigquery"):
        if style == "plain":
            return plain_envelope(self.code, self.message, self.status)
        return bigquery_envelope(self.code, self.message, self.reason, self.domain, self.status,
                                 self.location, self.location_type, self.error_message)


class OAuthError(Exception):
    """An error answered in the OAuth shape (docs/google-apis.md 3.2 step 6)."""

    def __init__(self, error, description, code=400):
        super().__init__(description)
        self.code = int(code)
        self.error = error
        self.description = description

    def body(self):
        return {"error": self.error, "error_description": self.description}


class RawError(Exception):
    """An error answered with a raw body (metadata server: text, not JSON)."""

    def __init__(self, code, body, content_type="text/plain; charset=utf-8", headers=None):
        super().__init__(body)
        self.code = int(code)
        self.body = body
        self.content_type = content_type
        self.headers = dict(headers or {})


def invalid(message, reason="invalid", location=None):
    return ApiError(400, message, reason, location=location)


def not_found(message):
    return ApiError(404, message, "notFound")


def duplicate(message):
    return ApiError(409, message, "duplicate")


def invalid_query(message):
    return ApiError(400, message, "invalidQuery", location="q", location_type="parameter")
