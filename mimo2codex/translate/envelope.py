"""Our `encrypted_content` envelope: carries the provider's raw reasoning through Codex and back.

Codex echoes reasoning items verbatim (`include: ["reasoning.encrypted_content"]`), so sealing the
full `reasoning_content` here is how a stateless proxy satisfies MiMo's pass-back rule even when
summaries are hidden. The prefix makes our envelopes recognisable; anything else (OpenAI's own
encrypted blobs from an earlier OpenAI session) is ignored, never decoded blindly.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib

PREFIX = "m2c1:"


def seal(reasoning: str) -> str:
    raw = json.dumps({"r": reasoning}, ensure_ascii=False).encode()
    return PREFIX + base64.urlsafe_b64encode(zlib.compress(raw, 6)).decode("ascii")


def unseal(value: object) -> str | None:
    """The reasoning text inside one of our envelopes, or None for anything else."""
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return None
    try:
        data = json.loads(zlib.decompress(base64.urlsafe_b64decode(value[len(PREFIX) :])))
    except (binascii.Error, zlib.error, ValueError):
        return None
    text = data.get("r") if isinstance(data, dict) else None
    return text if isinstance(text, str) else None
