"""The receiving side of vidgate's webhooks: check a delivery's signature before trusting it.

Deliveries are signed as Standard Webhooks say (webhook-id, webhook-timestamp and
webhook-signature headers); the check is the `standardwebhooks` package's own, so what we sign
and what a receiver verifies cannot drift apart.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping
from typing import Any

import standardwebhooks

from vidgate.client._errors import WebhookVerificationError


def verify_webhook(payload: bytes, headers: Mapping[str, str], secret: str) -> dict[str, Any]:
    """The delivery's JSON body, once its signature checks out.

    `payload` is the request body exactly as received (before any JSON parsing), `headers`
    the request's headers (any case), `secret` the endpoint's `secret_key` (whsec_...).
    Raises WebhookVerificationError for a signature that does not match, a webhook-timestamp
    more than five minutes from now (a replay), missing headers or a body that is not a JSON
    object; ValueError for a secret that is not a Standard Webhooks secret.
    """
    try:
        webhook = standardwebhooks.Webhook(secret)
    except (binascii.Error, ValueError, standardwebhooks.webhooks.EmptyWebhookSecretError) as exc:
        raise ValueError("secret: not a Standard Webhooks secret (whsec_ + base64)") from exc
    try:
        webhook.verify(payload, dict(headers), json_parse=False)
    except standardwebhooks.WebhookVerificationError as exc:
        raise WebhookVerificationError(f"webhook refused: {exc}") from exc
    except (ValueError, binascii.Error) as exc:  # a malformed signature header or body
        raise WebhookVerificationError(f"webhook refused: malformed delivery ({exc})") from exc
    try:
        body = json.loads(payload)
    except ValueError as exc:
        raise WebhookVerificationError("webhook refused: the body is not JSON") from exc
    if not isinstance(body, dict):
        raise WebhookVerificationError("webhook refused: the body is not a JSON object")
    return body
