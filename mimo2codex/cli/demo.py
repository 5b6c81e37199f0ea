"""`python3 launch.py demo`: the whole chain offline — a strict fake provider, the real proxy, a Codex-shaped session.

Two turns, as Codex would run them: the model thinks and calls a tool; Codex sends the tool output
back together with the reasoning item it was given; the model answers. The demo prints what each
side saw, so a newcomer can watch the translation without a key or a network. `--provider NAME`
runs it against that provider's rules and strict fake (MiMo by default).
"""

from __future__ import annotations

import http.client
import json
import tempfile
from pathlib import Path

from mimo2codex import paths, proxyproc
from mimo2codex.translate import rules
from mimo2codex.fakes import providers
from mimo2codex.fakes.chat_server import FakeChatServer
from mimo2codex.translate.sse import iter_events

DEMO_KEY = "demo-key-not-secret"
TOOLS = [
    {"type": "function", "name": "exec_command", "description": "Run a shell command.", "strict": False,
     "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"], "additionalProperties": False}},
    {"type": "custom", "name": "apply_patch", "description": "Edit files with a patch.",
     "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+ end_patch"}},
]


def codex_request(model: str, items: list[dict]) -> dict:
    return {"model": model, "stream": True, "tools": TOOLS, "tool_choice": "auto", "parallel_tool_calls": True,
            "reasoning": {"effort": "medium"}, "store": False, "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": "demo-session", "input": items}


def post(port: int, body: dict) -> list[dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/v1/responses", json.dumps(body), {"content-type": "application/json",
                                                             "authorization": "Bearer codex-placeholder"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return list(iter_events(data))


def show(events: list[dict]) -> list[dict]:
    """Print one line per event; return the items Codex would keep (output_item.done)."""
    items = []
    for ev in events:
        kind = ev.get("type", "?")
        detail = ""
        if kind.endswith(".delta"):
            detail = json.dumps(ev.get("delta"), ensure_ascii=False)
        elif kind == "response.output_item.done":
            item = ev["item"]
            items.append(item)
            detail = f"{item['type']} " + json.dumps({k: v for k, v in item.items() if k in ("name", "arguments", "input", "call_id")}, ensure_ascii=False)
        elif kind in ("response.completed", "response.failed", "response.incomplete"):
            detail = json.dumps(ev["response"].get("usage") or ev["response"].get("error"), ensure_ascii=False)
        print(f"  {ev.get('sequence_number', ''):>3} {kind} {detail}"[:160])
    return items


def run(rules_name: str = "mimo") -> int:
    try:
        r = rules.load(rules_name)
        profile = providers.profile(r.provider, (DEMO_KEY,))
    except rules.RulesError as e:
        raise SystemExit(f"mimo2codex: bad rules: {e}") from None
    except KeyError:
        raise SystemExit(f"mimo2codex: the demo has no fake for provider {r.provider!r} (it has: mimo, "
                         f"{', '.join(sorted(providers.PROFILES))})") from None
    with FakeChatServer(profile).start() as fake, tempfile.TemporaryDirectory() as tmp:
        fake.queue({"reasoning": "The user wants the files listed; I'll run ls.",
                    "tool_calls": [{"name": "exec_command", "arguments": json.dumps({"cmd": "ls"})}]})
        fake.queue({"reasoning": "ls printed two files; summarise.", "text": "There are two files: README.md and launch.py."})
        print(f"fake {r.name} (strict, offline) at {fake.base_url}")
        with proxyproc.start(fake.base_url, key=DEMO_KEY, key_env=r.auth_env, rules=r.path,
                             log_path=Path(tmp) / "proxy.log") as proxy:
            print(f"mimo2codex proxy (mitmdump -s addon/mimo.py) at {proxy.base_url}\n")
            user = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What files are here?"}]}
            print("Turn 1 — Codex sends POST /v1/responses; the proxy streams back:")
            items = show(post(proxy.port, codex_request(r.default_model, [user])))
            call = next(i for i in items if i["type"] == "function_call")
            output = {"type": "function_call_output", "call_id": call["call_id"], "output": "README.md\nlaunch.py\n"}
            print("\nTurn 2 — Codex runs the tool and sends the output back with the reasoning item:")
            show(post(proxy.port, codex_request(r.default_model, [user, *items, output])))
            sent = fake.requests[-1].body
            assistant = next(m for m in sent["messages"] if m["role"] == "assistant")
            field = r.reasoning.get("pass_back_field") or "reasoning_content"
            print(f"\nWhat {r.name} received on turn 2 (Chat Completions):")
            print(f"  roles: {[m['role'] for m in sent['messages']]}")
            print(f"  assistant.{field}: {assistant.get(field)!r}  (reasoning passed back: {r.reasoning.get('pass_back')})")
            print(f"  assistant.tool_calls[0]: {json.dumps(assistant['tool_calls'][0])}")
            print(f"  other fields: {json.dumps({k: v for k, v in sent.items() if k not in ('messages', 'tools')})}"[:300])
            print("\nThe proxy never forwarded Codex's bearer token: upstream saw",
                  "its own key only" if all("codex-placeholder" not in json.dumps(dict(r.headers)) for r in fake.requests) else "A LEAK")
    flag = "" if r.provider == "mimo" else f" --provider {rules_name}"
    print(f"\nDemo done. With a real key: export {r.auth_env}=sk-... && {paths.COMMAND}{flag}")
    return 0
