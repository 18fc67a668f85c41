"""Standard Webhooks secrets and signatures (https://www.standardwebhooks.com).

The signature is the standardwebhooks package's own: `v1,` + base64 HMAC-SHA256 of
`{webhook-id}.{webhook-timestamp}.{body}` under the secret's bytes. A receiver verifies with the
same package (`Webhook(secret).verify(body, headers)`), which also refuses a timestamp more than
five minutes away, so the timestamp is taken at each attempt, not when the event happened.
"""

from __future__ import annotations

import base64
import re
import secrets
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # what we generate; Standard Webhooks asks for 24 to 64
# What a given secret must be: whsec_ and padded standard base64 of 24 bytes or more, at most
# 88 characters (so the column, 100 characters, always holds it). Also the API's pattern.
SECRET_PATTERN = r"^whsec_(?:[A-Za-z0-9+/]{4}){8,21}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
SECRET_RULE = (
    "must be whsec_ followed by the padded base64 of 24 or more random bytes "
    "(at most 88 characters)"
)
_SECRET = re.compile(SECRET_PATTERN)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def is_valid_secret(secret: str) -> bool:
    return _SECRET.fullmatch(secret) is not None


def signed_headers(
    secret: str, *, message_id: str, payload: str, at: datetime | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt (its own timestamp and signature)."""
    moment = (at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, moment, payload),
    }
