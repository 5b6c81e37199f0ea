"""What Codex needs to reach the proxy: the config.toml block, auth.json, a model catalog.

Text only (never the token or a key: this output ends up in terminals and logs). Imports the
rules, nothing from the rest of the command line.
"""

from __future__ import annotations

import json

from mimo2codex.translate import rules
from mimo2codex.translate.secrets import TOKEN_ENV


LOCAL_PLACEHOLDER_KEY = "mimo2codex-local"


def connect_host(host: str) -> str:
    """Where a client on this machine reaches a proxy bound to `host` (a wildcard is reached on loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)


def url_host(host: str) -> str:
    """`host` as it goes into a URL: an IPv6 literal in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def proxy_url(host: str, port: int) -> str:
    return f"http://{url_host(connect_host(host))}:{port}/v1"


def codex_config(r: rules.Rules, host: str, port: int, *, env_key: bool = False, catalog: str | None = None) -> str:
    lines = [f'model = "{r.default_model}"', f'model_provider = "{r.provider}"']
    if catalog:
        lines.append(f"model_catalog_json = {json.dumps(catalog)}")  # a JSON string is a TOML basic string
    lines += ["", f"[model_providers.{r.provider}]", f'name = "{r.name} (via mimo2codex)"',
              f'base_url = "{proxy_url(host, port)}"', 'wire_api = "responses"']
    lines.append('env_key = "MIMO2CODEX_KEY"' if env_key else "requires_openai_auth = true")
    # Retrying is the proxy's job (bounded, Retry-After aware); Codex's own loop would multiply it.
    lines.append("request_max_retries = 1")
    # Said explicitly: a Codex that tries a websocket first only learns from a refusal that we speak HTTP.
    lines.append("supports_websockets = false")
    return "\n".join(lines)


def auth_json(token: bool = False) -> str:
    # The token itself is never printed: this text ends up in terminals and logs.
    return json.dumps({"OPENAI_API_KEY": f"<your {TOKEN_ENV}>" if token else LOCAL_PLACEHOLDER_KEY}, indent=2)


def model_catalog(r: rules.Rules) -> dict:
    """A Codex model catalog: with `apply_patch_tool_type: freeform` Codex offers its real apply_patch tool."""
    levels = {"low": "Fast responses with lighter reasoning", "medium": "Balances speed and reasoning depth",
              "high": "Greater reasoning depth for complex problems"}
    models = []
    for i, m in enumerate(r.models.values()):
        efforts = [e for e in m.efforts if e in levels] or ["medium"]
        models.append({
            "slug": m.id, "display_name": m.id, "description": f"{r.name} via mimo2codex",
            "apply_patch_tool_type": "freeform", "shell_type": "shell_command", "visibility": "list",
            "supported_in_api": True, "priority": i + 1, "context_window": m.context or 128000,
            "supported_reasoning_levels": [{"effort": e, "description": levels.get(e, e)} for e in efforts],
            "default_reasoning_level": "medium" if "medium" in efforts else efforts[0],
            "truncation_policy": {"mode": "tokens", "limit": 10000}, "supports_parallel_tool_calls": True,
            "input_modalities": ["text", "image"] if m.vision else ["text"], "supports_reasoning_summaries": True,
            "default_reasoning_summary": "none", "support_verbosity": False, "experimental_supported_tools": [],
            "base_instructions": "You are Codex, a coding agent. Be precise, safe and helpful.",
        })
    return {"models": models}
