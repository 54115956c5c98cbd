"""Request signing for chat robots, and a safe short name for a secret.

DingTalk and Feishu both sign with HMAC-SHA256 over a timestamp and the robot's secret, but
they put the parts in different places:

- DingTalk: key = the secret, message = f"{milliseconds}\\n{secret}"; the base64 digest is
  URL-encoded into the webhook URL as `&timestamp=...&sign=...`.
- Feishu: key = f"{seconds}\\n{secret}", message = empty; the base64 digest goes into the JSON
  body as `"sign"`, next to `"timestamp"` (seconds, as a string).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote_plus

_DIGEST_HEX_CHARS = 16


def dingtalk_signature(secret: str, timestamp_ms: int) -> str:
    """The base64 signature DingTalk expects for `timestamp_ms` (not yet URL-encoded)."""
    string_to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), string_to_sign, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def dingtalk_signed_url(url: str, secret: str, timestamp_ms: int) -> str:
    """`url` with DingTalk's `timestamp` and URL-encoded `sign` query parameters appended."""
    separator = "&" if "?" in url else "?"
    sign = quote_plus(dingtalk_signature(secret, timestamp_ms))
    return f"{url}{separator}timestamp={timestamp_ms}&sign={sign}"


def feishu_signature(secret: str, timestamp_s: int) -> str:
    """The base64 signature Feishu expects for `timestamp_s`: the HMAC key is the string to
    sign and the message is empty."""
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


def secret_digest(secret: str) -> str:
    """A short, stable name for a secret (a robot URL or key) that does not reveal it."""
    return hashlib.sha256(secret.encode()).hexdigest()[:_DIGEST_HEX_CHARS]
