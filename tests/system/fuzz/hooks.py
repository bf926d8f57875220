"""Schemathesis hooks for the fuzz test (tests/system/tests/fuzz.rs).

LiveKit signs each webhook: `Authorization` is an HS256 JWT (API key as `iss`, signed with
the API secret) whose `sha256` claim is the base64 SHA-256 of the exact body. A generated
body with no signature only ever reaches the 401 branch, so this hook serializes the body
itself and signs those bytes (replacing the `Authorization` schemathesis makes up for the
scheme), and the fuzzer reaches the parser and the database behind it. The 401 branch has
its own tests in services/webhook-ingest.

Random ids name nothing, so a body's `sessionId` / `callId` would only ever meet 404: the
`flatmap_body` hook also offers the ids of what the fuzz test seeded (FUZZ_IDS, a JSON object
of key → ids), so the admission paths and their success answers are fuzzed too.

Loaded through SCHEMATHESIS_HOOKS=hooks with this folder on PYTHONPATH; the key and secret
come from FUZZ_LIVEKIT_KEY and FUZZ_LIVEKIT_SECRET.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import time

import schemathesis
from hypothesis import strategies as st
from requests.compat import json as requests_json

WEBHOOK_PATH = "/webhooks/livekit"
SEEDED = json.loads(os.environ.get("FUZZ_IDS") or "{}")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(body: bytes) -> str:
    """The `Authorization` LiveKit would send with `body` (livekit::sign_webhook)."""
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {
        "iss": os.environ["FUZZ_LIVEKIT_KEY"],
        "nbf": now,
        "exp": now + 300,
        "sha256": base64.b64encode(hashlib.sha256(body).digest()).decode(),
    }
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    mac = hmac.new(os.environ["FUZZ_LIVEKIT_SECRET"].encode(), signing_input.encode(), hashlib.sha256)
    return f"{signing_input}.{_b64url(mac.digest())}"


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.path != WEBHOOK_PATH:
        return
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    # The bytes schemathesis will send: its JSON serializer hands the value to `requests`,
    # which encodes it so (bytes and `None` it sends itself).
    if isinstance(case.body, bytes):
        body = case.body
    elif case.body is None:
        body = b"null"
    else:
        try:
            body = requests_json.dumps(case.body, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError):
            return  # not JSON at all: sent unsigned
    headers["Authorization"] = sign(body)
    case.headers = headers


UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _is_uuid(value) -> bool:
    return isinstance(value, str) and UUID.fullmatch(value) is not None


@schemathesis.hook
def flatmap_body(context, body):
    # Only a well-formed id is swapped for a seeded one, so a case stays as valid (or as
    # invalid) as schemathesis made it.
    if not isinstance(body, dict):
        return st.just(body)
    options = [body]
    for key, ids in SEEDED.items():
        if _is_uuid(body.get(key)):
            options.extend({**body, key: seeded} for seeded in ids)
    return st.sampled_from(options)
