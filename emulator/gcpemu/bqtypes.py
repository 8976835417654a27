"""BigQuery value types: parsing input values, storing them in SQLite, rendering result cells.

Storage (SQLite, no column affinity): STRING/DATE/DATETIME/TIME/NUMERIC/BIGNUMERIC/GEOGRAPHY/
BYTES(base64 text) as TEXT, INT64 as INTEGER, FLOAT64 as REAL, BOOL as 0/1, TIMESTAMP as integer
microseconds since the epoch, JSON as its compact text, RECORD and REPEATED as JSON text of the
stored sub-values.
"""
import base64
import binascii
import datetime
import json
import math
import re

# Standard SQL name for every spelling the API accepts (TableFieldSchema.type).
STANDARD = {
    "STRING": "STRING", "BYTES": "BYTES", "INTEGER": "INT64", "INT64": "INT64",
    "FLOAT": "FLOAT64", "FLOAT64": "FLOAT64", "NUMERIC": "NUMERIC", "DECIMAL": "NUMERIC",
    "BIGNUMERIC": "BIGNUMERIC", "BIGDECIMAL": "BIGNUMERIC", "BOOLEAN": "BOOL", "BOOL": "BOOL",
    "TIMESTAMP": "TIMESTAMP", "DATE": "DATE", "TIME": "TIME", "DATETIME": "DATETIME",
    "GEOGRAPHY": "GEOGRAPHY", "JSON": "JSON", "RECORD": "STRUCT", "STRUCT": "STRUCT",
}
# The REST API reports schemas with the legacy names (tables.get, query result schemas).
LEGACY = {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN", "STRUCT": "RECORD"}

NUMERIC_TYPES = ("INT64", "FLOAT64", "NUMERIC", "BIGNUMERIC")

MIN_TS_US = -62135596800 * 1_000_000            # 0001-01-01 00:00:00 UTC
MAX_TS_US = 253402300799 * 1_000_000 + 999_999  # 9999-12-31 23:59:59.999999 UTC

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)

_TS_RE = re.compile(
    r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:[Tt ](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,9}))?)?)?"
    r"\s*(?:(Z|z|UTC)|([+-])(\d{1,2})(?::?(\d{2}))?)?\s*$")
_DATE_RE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_INT_RE = re.compile(r"^[+-]?\d+$")


def standard_type(name):
    return STANDARD.get(str(name).upper())


def legacy_name(std):
    return LEGACY.get(std, std)


def parse_timestamp(text):
    """Text timestamp -> microseconds since the epoch, or raise ValueError.

    Accepts RFC 3339 (`2024-01-14T14:00:00.123Z`, `+hh:mm` offsets) and BigQuery's canonical
    form (`2024-01-14 14:00:00[.ffffff][ UTC|+00:00]`); no zone means UTC. More than six
    fraction digits are refused (stricter than truncating them)."""
    m = _TS_RE.match(text)
    if not m:
        raise ValueError("Invalid timestamp: '%s'" % text)
    y, mo, d, hh, mi, ss, frac, utc, sign, oh, om = m.groups()
    if frac and len(frac) > 6:
        raise ValueError("Invalid timestamp: '%s' (more than 6 fractional digits)" % text)
    try:
        dt = datetime.datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0),
                               int(ss or 0), tzinfo=datetime.timezone.utc)
    except ValueError:
        raise ValueError("Invalid timestamp: '%s'" % text) from None
    delta = dt - _EPOCH
    us = (delta.days * 86400 + delta.seconds) * 1_000_000
    if frac:
        us += int(frac.ljust(6, "0"))
    if sign:
        off = int(oh) * 3600 + int(om or 0) * 60
        if int(oh) > 14 or int(om or 0) > 59:
            raise ValueError("Invalid timestamp: '%s'" % text)
        us -= off * 1_000_000 if sign == "+" else -off * 1_000_000
    if us < MIN_TS_US or us > MAX_TS_US:
        raise ValueError("Timestamp out of range: '%s'" % text)
    return us


def epoch_seconds_to_us(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("Invalid timestamp value")
    us = int(round(value * 1_000_000)) if isinstance(value, float) else int(value) * 1_000_000
    if us < MIN_TS_US or us > MAX_TS_US:
        raise ValueError("Timestamp out of range")
    return us


def us_to_rfc3339(us):
    dt = _EPOCH + datetime.timedelta(microseconds=us)
    s = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if us % 1_000_000:
        s += ".%06d" % (us % 1_000_000)
    return s + "Z"


def us_to_canonical(us):
    dt = _EPOCH + datetime.timedelta(microseconds=us)
    return dt.strftime("%Y-%m-%d %H:%M:%S") + ".%06d+00:00" % (us % 1_000_000)


def java_double(x):
    """Java's Double.toString(x): shortest round-trip digits; plain notation with at least one
    fraction digit for 1e-3 <= |x| < 1e7, else `d.dddE[-]n`. Python's repr already yields the
    shortest round-trip digits, so only the layout differs."""
    if x != x:
        return "NaN"
    if x == math.inf:
        return "Infinity"
    if x == -math.inf:
        return "-Infinity"
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    sign = "-" if x < 0 else ""
    r = repr(abs(float(x)))
    if "e" in r:
        mant, exp = r.split("e")
        exp = int(exp)
    else:
        mant, exp = r, 0
    if "." in mant:
        ip, fp = mant.split(".")
    else:
        ip, fp = mant, ""
    digits = (ip + fp).lstrip("0")
    # decimal exponent of the first significant digit
    lead_zeros = len(ip + fp) - len((ip + fp).lstrip("0"))
    e10 = len(ip) - 1 - lead_zeros + exp
    digits = digits.rstrip("0") or "0"
    if 1e-3 <= abs(x) < 1e7:
        if e10 >= 0:
            int_part = digits[:e10 + 1].ljust(e10 + 1, "0")
            frac_part = digits[e10 + 1:] or "0"
        else:
            int_part = "0"
            frac_part = "0" * (-e10 - 1) + digits
        return "%s%s.%s" % (sign, int_part, frac_part)
    return "%s%s.%sE%d" % (sign, digits[0], digits[1:] or "0", e10)


def timestamp_cell(us, use_int64):
    if use_int64:
        return str(us)
    return java_double(us / 1e6)


# ---------------------------------------------------------------------------------------------
# Input values (tabledata.insertAll rows; later NDJSON loads)

class RowError(Exception):
    def __init__(self, location, message, reason="invalid"):
        super().__init__(message)
        self.location = location
        self.message = message
        self.reason = reason


def _fail(location, message):
    raise RowError(location, message)


def convert_scalar(std, value, location):
    """JSON input value -> stored value. Raises RowError. `value` is not None."""
    if std == "STRING":
        # Stricter than BigQuery's JSON import, which stringifies numbers: STRING must be a
        # JSON string.
        if not isinstance(value, str):
            _fail(location, "Cannot convert value to string.")
        return value
    if std == "INT64":
        if isinstance(value, bool):
            _fail(location, "Cannot convert value to integer (bad value): %s" % json.dumps(value))
        if isinstance(value, int):
            v = value
        elif isinstance(value, float) and value.is_integer():
            v = int(value)
        elif isinstance(value, str) and _INT_RE.match(value.strip()):
            v = int(value.strip())
        else:
            _fail(location, "Cannot convert value to integer (bad value): %s" % value)
        if not -(1 << 63) <= v < (1 << 63):
            _fail(location, "Cannot convert value to integer (out of range): %s" % value)
        return v
    if std == "FLOAT64":
        if isinstance(value, bool):
            _fail(location, "Cannot convert value to floating point (bad value): %s" % value)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            s = value.strip()
            if s in ("NaN", "Infinity", "-Infinity", "+Infinity", "inf", "-inf"):
                return float(s.replace("Infinity", "inf"))
            try:
                return float(s)
            except ValueError:
                pass
        _fail(location, "Cannot convert value to floating point (bad value): %s" % value)
    if std == "BOOL":
        if isinstance(value, bool):
            return 1 if value else 0
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return 1 if value.lower() == "true" else 0
        _fail(location, "Cannot convert value to boolean: %s" % json.dumps(value))
    if std == "TIMESTAMP":
        try:
            if isinstance(value, str):
                return parse_timestamp(value)
            return epoch_seconds_to_us(value)
        except ValueError:
            _fail(location, "Cannot convert value to timestamp: %s" % json.dumps(value))
    if std in ("NUMERIC", "BIGNUMERIC"):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            _fail(location, "Cannot convert value to numeric: %s" % json.dumps(value))
        s = str(value).strip()
        if not re.match(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$", s):
            _fail(location, "Invalid NUMERIC value: %s" % s)
        return s
    if std == "DATE":
        if not isinstance(value, str) or not _DATE_RE.match(value):
            _fail(location, "Invalid date: %s" % json.dumps(value))
        try:
            datetime.date(*map(int, value.split("-")))
        except ValueError:
            _fail(location, "Invalid date: %s" % value)
        y, mo, d = value.split("-")
        return "%04d-%02d-%02d" % (int(y), int(mo), int(d))
    if std in ("DATETIME", "TIME", "GEOGRAPHY"):
        if not isinstance(value, str):
            _fail(location, "Cannot convert value to %s: %s" % (std.lower(), json.dumps(value)))
        return value
    if std == "BYTES":
        if not isinstance(value, str):
            _fail(location, "Cannot convert value to bytes.")
        try:
            s = value.replace("-", "+").replace("_", "/")
            base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
        except (binascii.Error, ValueError):
            _fail(location, "Invalid base64 value for a BYTES field.")
        return value
    if std == "JSON":
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    _fail(location, "Unsupported field type %s" % std)


def value_bytes(std, stored):
    """Logical bytes of one stored value, the way BigQuery prices them (NULL = 0)."""
    if stored is None:
        return 0
    if std in ("STRING", "JSON", "GEOGRAPHY"):
        return 2 + len(stored.encode("utf-8"))
    if std == "BYTES":
        return 2 + (len(stored) * 3) // 4
    if std in ("INT64", "FLOAT64", "TIMESTAMP", "DATE", "DATETIME", "TIME"):
        return 8
    if std == "BOOL":
        return 1
    if std == "NUMERIC":
        return 16
    if std == "BIGNUMERIC":
        return 32
    return 8


# ---------------------------------------------------------------------------------------------
# Result cells

def render_cell(std, value, use_int64, fields=None, repeated=False):
    """Stored value -> the `v` of a result cell (docs/google-apis.md 2.4)."""
    if repeated:
        items = json.loads(value) if isinstance(value, str) else (value or [])
        return [{"v": render_cell(std, item, use_int64, fields)} for item in items]
    if value is None:
        return None
    if std == "STRUCT":
        rec = json.loads(value) if isinstance(value, str) else value
        return {"f": [{"v": render_cell(f["std"], rec.get(f["name"]), use_int64, f.get("fields"),
                                        f.get("repeated", False))} for f in fields]}
    if std == "TIMESTAMP":
        return timestamp_cell(int(value), use_int64)
    if std == "INT64":
        return str(int(value))
    if std == "FLOAT64":
        return java_double(float(value))
    if std == "BOOL":
        return "true" if value else "false"
    if isinstance(value, float):
        return java_double(value)
    return str(value)
