"""Service-account keys: generation with the `openssl` command, RSA public numbers from the
PEM (a tiny DER reader), RS256 verification with pow() and a PKCS#1 v1.5 DigestInfo compare."""
import base64
import hashlib
import hmac
import json
import os
import secrets
import subprocess

# DER of DigestInfo{ AlgorithmIdentifier{sha256, NULL}, OCTET STRING(32) } without the digest.
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


class KeyError_(Exception):
    pass


def b64url_decode(part):
    """Unpadded base64url -> bytes. Padding or foreign characters are refused (strict)."""
    if not isinstance(part, str) or "=" in part:
        raise ValueError("padded or non-text base64url")
    for ch in part:
        if not (ch.isascii() and (ch.isalnum() or ch in "-_")):
            raise ValueError("bad base64url character")
    if len(part) % 4 == 1:
        raise ValueError("bad base64url length")
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64url_encode(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# --- minimal DER reader ----------------------------------------------------------------------

def _der_read(buf, pos):
    tag = buf[pos]
    pos += 1
    length = buf[pos]
    pos += 1
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(buf[pos:pos + n], "big")
        pos += n
    return tag, buf[pos:pos + length], pos + length


def _der_children(content):
    out, pos = [], 0
    while pos < len(content):
        tag, value, pos = _der_read(content, pos)
        out.append((tag, value))
    return out


def _rsa_private_numbers(der_pkcs1):
    tag, seq, _ = _der_read(der_pkcs1, 0)
    items = _der_children(seq)
    if tag != 0x30 or len(items) < 4 or any(t != 0x02 for t, _ in items[:4]):
        raise KeyError_("not an RSAPrivateKey")
    return tuple(int.from_bytes(items[i][1], "big") for i in (1, 2, 3))


def rsa_public_numbers_from_pem(pem):
    """(n, e) of an RSA private key in PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 PEM."""
    return rsa_private_numbers_from_pem(pem)[:2]


def rsa_private_numbers_from_pem(pem):
    """(n, e, d) of an RSA private key in PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 PEM."""
    lines = [ln.strip() for ln in pem.strip().splitlines()]
    if not lines or not lines[0].startswith("-----BEGIN"):
        raise KeyError_("not a PEM key")
    label = lines[0]
    body = "".join(ln for ln in lines[1:] if not ln.startswith("-----"))
    der = base64.b64decode(body)
    if "RSA PRIVATE KEY" in label:
        return _rsa_private_numbers(der)
    if "PRIVATE KEY" not in label:
        raise KeyError_("not a private key PEM")
    tag, seq, _ = _der_read(der, 0)
    items = _der_children(seq)
    # PrivateKeyInfo: version INTEGER, algorithm SEQUENCE, privateKey OCTET STRING
    if tag != 0x30 or len(items) < 3 or items[2][0] != 0x04:
        raise KeyError_("not a PKCS#8 PrivateKeyInfo")
    alg = _der_children(items[1][1])
    if not alg or alg[0][1] != bytes.fromhex("2a864886f70d010101"):  # rsaEncryption
        raise KeyError_("not an RSA key")
    return _rsa_private_numbers(items[2][1])


def rs256_verify(n, e, signing_input, signature):
    k = (n.bit_length() + 7) // 8
    if len(signature) != k:
        return False
    s = int.from_bytes(signature, "big")
    if s >= n:
        return False
    em = pow(s, e, n).to_bytes(k, "big")
    t = SHA256_DIGEST_INFO + hashlib.sha256(signing_input).digest()
    if k < len(t) + 11:
        return False
    expected = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
    return hmac.compare_digest(em, expected)


def rs256_sign(n, d, signing_input):
    """RSASSA-PKCS1-v1_5 with SHA-256 (test helper: the harness signs self-signed JWTs)."""
    k = (n.bit_length() + 7) // 8
    t = SHA256_DIGEST_INFO + hashlib.sha256(signing_input).digest()
    em = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
    return pow(int.from_bytes(em, "big"), d, n).to_bytes(k, "big")


def generate_private_key_pem():
    """A throwaway RSA-2048 key (PKCS#8 PEM) from the openssl command."""
    out = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA",
                          "-pkeyopt", "rsa_keygen_bits:2048"],
                         check=True, capture_output=True, timeout=60)
    return out.stdout.decode("ascii")


def make_service_account(project, token_uri, pem=None):
    """A complete service-account key JSON (docs/google-apis.md 3.1 shape) around a throwaway key."""
    pem = pem or generate_private_key_pem()
    email = "datos-test@%s.iam.gserviceaccount.com" % project
    return {
        "type": "service_account",
        "project_id": project,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": email,
        "client_id": str(100000000000000000000 + secrets.randbelow(10 ** 20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
                                + email.replace("@", "%40"),
        "universe_domain": "googleapis.com",
    }


def write_private_file(path, text):
    """Write `text` to `path` with mode 0600, atomically."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class ServiceAccountKey:
    """The public half the emulator trusts, plus the JSON it was built from."""

    def __init__(self, info):
        for field in ("client_email", "private_key", "private_key_id"):
            if not isinstance(info.get(field), str) or not info.get(field):
                raise KeyError_("service-account key lacks %s" % field)
        self.info = info
        self.email = info["client_email"]
        self.key_id = info["private_key_id"]
        self.n, self.e = rsa_public_numbers_from_pem(info["private_key"])

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f))
