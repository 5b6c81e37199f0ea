#!/usr/bin/env python3
"""Talk to Xiaomi MiMo's Chat Completions API with the Python standard library only.

    python3 mimo_chat.py "Explain this error: ..."
    python3 mimo_chat.py --image screenshot.png "What is wrong in this UI?"     # vision models only
    echo "long prompt" | python3 mimo_chat.py -                                 # prompt from stdin
    python3 mimo_chat.py --json "..."                                           # one JSON object out
    python3 mimo_chat.py --list-models

The answer streams to stdout; MiMo's reasoning (reasoning_content) streams to stderr unless
--hide-reasoning, so `answer=$(python3 mimo_chat.py ...)` captures only the answer.

Key: MIMO_API_KEY (or --api-key). Host: MIMO_BASE_URL / --base-url, a URL or one of payg,
token-plan-cn, token-plan-sgp; by default sk- keys go to the pay-as-you-go host and tp- keys to
token-plan-cn. Auth header: Authorization: Bearer (default; works on every host) or --auth api-key.

Never needs the openai package. Exit codes: 0 ok, 1 MiMo answered with an error, 2 usage,
3 network failure, 4 the stream broke off.
"""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# Facts below mirror rules/mimo.yaml of mimo2codex (tests/test_mimoskill_chat.py keeps them in
# sync); the skill is copied into Codex's skills folder on its own, so it cannot read that file.
HOSTS = {
    "payg": "https://api.xiaomimimo.com/v1",
    "token-plan-cn": "https://token-plan-cn.xiaomimimo.com/v1",
    "token-plan-sgp": "https://token-plan-sgp.xiaomimimo.com/v1",
}
DEFAULT_MODEL = "mimo-v2.6-pro"
# MiMo answers 404 "No endpoints found that support image input" for images sent to these.
TEXT_ONLY_MODELS = frozenset({"mimo-v2.5-pro"})
VISION_HINT = "mimo-v2.6-pro, mimo-v2.6-flash or mimo-v2.5"
MAX_COMPLETION_TOKENS = 131072
RETRY_STATUSES = (429, 500, 502, 503, 504)

EXIT_API, EXIT_USAGE, EXIT_NETWORK, EXIT_STREAM = 1, 2, 3, 4


class ChatError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_API, status: int | None = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.exit_code = exit_code
        self.status = status
        self.retry_after = retry_after


# ------------------------------------------------------------------------------------- errors
def parse_error_body(raw: bytes) -> dict:
    """MiMo's error object, whether the body is JSON or SSE-framed (`data:{"error":...}`)."""
    text = raw.decode("utf-8", "replace").strip()
    for line in text.splitlines() or [""]:
        line = line.strip()
        if line.startswith("data:"):
            line = line[5:].strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            err = obj.get("error", obj)
            return err if isinstance(err, dict) else {"message": str(err)}
    return {"message": text[:500]} if text else {}


def describe_error(status: int | None, err: dict, ctx: dict, where: str = "") -> str:
    """One readable line plus a hint. MiMo puts the useful detail in `param`, not `message`."""
    message = str(err.get("message") or "").strip()
    param = str(err.get("param") or "").strip()
    etype = str(err.get("type") or "").strip()
    code = str(err.get("code") or status or "").strip()
    parts = [p for p in (message, param) if p]
    detail = " - ".join(dict.fromkeys(parts)) or "no details in the response body"
    model, base_url, key = ctx["model"], ctx["base"], ctx["key"]
    head = f"MiMo error {status or code}" + (f" ({etype})" if etype else "") + where
    text = f"{head}: {detail}"
    low = f"{message} {param}".lower()
    hint = ""
    if status == 401:
        prefix = (key[:3] if key else "") or "?"
        other = "--auth api-key" if ctx.get("auth") != "api-key" else "--auth bearer (the default)"
        hint = (f"the key was rejected by {base_url}. sk- keys belong to {HOSTS['payg']}, tp- keys to a "
                f"token-plan host ({HOSTS['token-plan-cn']} or {HOSTS['token-plan-sgp']}); your key "
                f"starts with {prefix!r}. If the key and host match, try {other}.")
    elif status == 402:
        hint = "the MiMo account has no balance left (top up, or use a token-plan key)."
    elif status == 404 and "image" in low:
        hint = f"{model} does not accept images; use a vision model: --model {VISION_HINT.split(',')[0]}."
    elif status == 404:
        hint = f"model {model!r} may be retired; current ids are listed by --list-models."
    elif status == 429:
        hint = "rate limited (MiMo: 100 requests/min per model); wait and retry."
    elif "reasoning_content" in low:
        hint = ("in thinking mode every earlier assistant message must carry its reasoning_content; "
                "add it to --messages history or pass --thinking off.")
    elif "not supported model" in low:
        hint = "use an exact lowercase model id from --list-models."
    elif "text` is not set" in low or "text is not set" in low:
        hint = "an image part needs a text part in the same message."
    elif "max_completion_tokens" in low or "max_tokens" in low:
        hint = f"--max-tokens must be at most {MAX_COMPLETION_TOKENS}."
    if key:
        text = text.replace(key, "[redacted]")
    return text + (f"\nhint: {hint}" if hint else "")


# ------------------------------------------------------------------------------------ request
def image_part(ref: str) -> dict:
    if ref.startswith(("http://", "https://", "data:")):
        url = ref
    else:
        path = Path(ref).expanduser()
        if not path.is_file():
            raise ChatError(f"image not found: {ref}", EXIT_USAGE)
        data = path.read_bytes()
        mime = mimetypes.guess_type(path.name)[0] or ""
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            mime = "image/png"
        elif data[:3] == b"\xff\xd8\xff":
            mime = "image/jpeg"
        elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            mime = "image/webp"
        elif data[:6] in (b"GIF87a", b"GIF89a"):
            mime = "image/gif"
        if not mime.startswith("image/"):
            raise ChatError(f"{ref} does not look like an image (png, jpeg, webp, gif)", EXIT_USAGE)
        url = f"data:{mime};base64,{base64.b64encode(data).decode()}"
    return {"type": "image_url", "image_url": {"url": url}}


def build_body(args, prompt: str) -> dict:
    messages: list[dict] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    if args.messages:
        try:
            history = json.loads(Path(args.messages).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ChatError(f"--messages {args.messages}: {exc}", EXIT_USAGE) from None
        if not isinstance(history, list) or not all(isinstance(m, dict) for m in history):
            raise ChatError("--messages must hold a JSON array of chat messages", EXIT_USAGE)
        messages.extend(history)
    if args.image:
        if args.model in TEXT_ONLY_MODELS:
            raise ChatError(f"{args.model} is text-only and MiMo rejects images for it (404); "
                            f"use a vision model such as {VISION_HINT}: --model {VISION_HINT.split(',')[0]}",
                            EXIT_USAGE)
        # MiMo 400s ("`text` is not set") on an image without a text part in the same message.
        content = [{"type": "text", "text": prompt or " "}] + [image_part(ref) for ref in args.image]
        messages.append({"role": "user", "content": content})
    elif prompt:
        messages.append({"role": "user", "content": prompt})
    if not messages or messages[-1].get("role") == "assistant":
        raise ChatError("nothing to send: give a prompt (or '-' to read it from stdin)", EXIT_USAGE)
    body: dict = {
        "model": args.model,
        "messages": messages,
        "max_completion_tokens": args.max_tokens,
        "stream": not args.no_stream,
    }
    if not args.no_stream:
        body["stream_options"] = {"include_usage": True}
    if args.thinking:
        body["thinking"] = {"type": "enabled" if args.thinking == "on" else "disabled"}
    if args.effort:
        body["reasoning_effort"] = args.effort
    if args.temperature is not None:
        body["temperature"] = args.temperature
    return body


def resolve_base_url(arg: str | None, key: str) -> str:
    value = (arg or os.environ.get("MIMO_BASE_URL") or "").strip()
    if not value:
        value = "token-plan-cn" if key.startswith("tp-") else "payg"
    value = HOSTS.get(value, value)
    if not value.startswith(("http://", "https://")):
        raise ChatError(f"--base-url must be a URL or one of {', '.join(HOSTS)}; got {value!r}", EXIT_USAGE)
    return value.rstrip("/")


def headers_for(key: str, auth: str, stream: bool) -> dict:
    h = {"Content-Type": "application/json", "User-Agent": "mimoskill-mimo-chat/1",
         "Accept": "text/event-stream" if stream else "application/json"}
    if auth == "api-key":
        h["api-key"] = key
    else:
        h["Authorization"] = f"Bearer {key}"
    return h


def open_request(req: urllib.request.Request, timeout: float, ctx: dict):
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        retry_after = exc.headers.get("Retry-After") if exc.headers else None
        try:
            retry_after = float(retry_after) if retry_after else None
        except ValueError:
            retry_after = None
        raise ChatError(describe_error(exc.code, parse_error_body(raw), ctx), EXIT_API, status=exc.code,
                        retry_after=retry_after) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ChatError(f"cannot reach MiMo at {ctx['base']}: {reason}\nhint: check the network or --base-url; "
                        "inside the Codex sandbox network access may be off - ask the user to run this "
                        "command in a normal terminal.", EXIT_NETWORK) from None


def send(req_factory, args, ctx: dict):
    """Open the request, retrying 429/5xx with backoff (Retry-After honoured); never 400/401/403."""
    attempt = 0
    while True:
        try:
            return open_request(req_factory(), args.timeout, ctx)
        except ChatError as exc:
            if exc.status not in RETRY_STATUSES or attempt >= args.retries:
                raise
            wait = exc.retry_after if exc.retry_after is not None else args.retry_wait * (2 ** attempt)
            wait = min(wait, 60.0)
            print(f"mimo_chat: MiMo answered {exc.status}; retrying in {wait:g}s "
                  f"({attempt + 1}/{args.retries})", file=sys.stderr)
            time.sleep(wait)
            attempt += 1


# ------------------------------------------------------------------------------------- output
class Printer:
    """Answer to stdout, reasoning to stderr (dimmed on a terminal), as the pieces arrive."""

    def __init__(self, show_reasoning: bool, quiet: bool):
        self.show_reasoning = show_reasoning and not quiet
        self.quiet = quiet
        self.in_reasoning = False
        self.tty = sys.stderr.isatty()
        self.wrote_answer = False

    def reasoning(self, text: str) -> None:
        if not self.show_reasoning or not text:
            return
        if not self.in_reasoning:
            sys.stderr.write("\x1b[2m[reasoning] " if self.tty else "[reasoning] ")
            self.in_reasoning = True
        sys.stderr.write(text)
        sys.stderr.flush()

    def end_reasoning(self) -> None:
        if self.in_reasoning:
            sys.stderr.write("\x1b[0m\n" if self.tty else "\n")
            sys.stderr.flush()
            self.in_reasoning = False

    def answer(self, text: str) -> None:
        if not text:
            return
        self.end_reasoning()
        if not self.quiet:
            sys.stdout.write(text)
            sys.stdout.flush()
            self.wrote_answer = True

    def finish(self) -> None:
        self.end_reasoning()
        if self.wrote_answer:
            sys.stdout.write("\n")
            sys.stdout.flush()


def read_stream(resp, printer: Printer, ctx: dict) -> dict:
    """Consume MiMo's SSE: role chunk, reasoning_content pieces, content pieces, finish, usage, [DONE]."""
    result = {"content": "", "reasoning": "", "finish_reason": None, "usage": None, "model": ctx["model"]}
    done = False
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line or line.startswith(":") or not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            break
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            raise ChatError(f"MiMo sent an unreadable stream line: {data[:200]}", EXIT_STREAM) from None
        if isinstance(chunk, dict) and chunk.get("error"):
            err = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
            printer.finish()
            status = err.get("code")
            status = int(status) if str(status).isdigit() else None
            raise ChatError(describe_error(status, err, ctx, " during the stream (the answer above is incomplete)"),
                            EXIT_API)
        result["model"] = chunk.get("model") or result["model"]
        if chunk.get("usage"):
            result["usage"] = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            piece = delta.get("reasoning_content")
            if piece:
                result["reasoning"] += piece
                printer.reasoning(piece)
            piece = delta.get("content")
            if piece:
                result["content"] += piece
                printer.answer(piece)
            if choice.get("finish_reason"):
                result["finish_reason"] = choice["finish_reason"]
    printer.finish()
    if not done and result["finish_reason"] is None:
        raise ChatError("the MiMo stream ended before the answer was complete (no finish_reason, no [DONE]); "
                        "retry the request", EXIT_STREAM)
    return result


def read_whole(resp, printer: Printer, ctx: dict) -> dict:
    raw = resp.read()
    try:
        body = json.loads(raw)
    except json.JSONDecodeError:
        raise ChatError(f"MiMo returned non-JSON: {raw[:200]!r}", EXIT_API) from None
    if body.get("error"):
        raise ChatError(describe_error(None, body["error"], ctx), EXIT_API)
    choice = (body.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    printer.reasoning(msg.get("reasoning_content") or "")
    printer.answer(msg.get("content") or "")
    printer.finish()
    return {"content": msg.get("content") or "", "reasoning": msg.get("reasoning_content") or "",
            "finish_reason": choice.get("finish_reason"), "usage": body.get("usage"),
            "model": body.get("model") or ctx["model"]}


# ---------------------------------------------------------------------------------------- CLI
def parse_args(argv):
    ap = argparse.ArgumentParser(prog="mimo_chat.py", description="Chat with Xiaomi MiMo (standard library only).")
    ap.add_argument("prompt", nargs="*", help="the prompt; '-' reads it from stdin")
    ap.add_argument("--model", "-m", default=os.environ.get("MIMO_MODEL") or DEFAULT_MODEL,
                    help=f"model id (default: $MIMO_MODEL or {DEFAULT_MODEL})")
    ap.add_argument("--system", "-s", help="system prompt")
    ap.add_argument("--image", "-i", action="append", default=[],
                    help="image file, https URL or data: URL (repeatable; vision models only)")
    ap.add_argument("--messages", help="JSON file with earlier chat messages to send before the prompt")
    ap.add_argument("--api-key", help="MiMo key (default: $MIMO_API_KEY)")
    ap.add_argument("--base-url", help="URL, or payg | token-plan-cn | token-plan-sgp (default: $MIMO_BASE_URL, "
                                       "else chosen from the key prefix)")
    ap.add_argument("--auth", choices=("bearer", "api-key"), default=os.environ.get("MIMO_AUTH") or "bearer",
                    help="auth header style (default bearer)")
    ap.add_argument("--max-tokens", type=int, default=8192,
                    help=f"max_completion_tokens, reasoning included (default 8192, max {MAX_COMPLETION_TOKENS})")
    ap.add_argument("--thinking", choices=("on", "off"), help="force thinking mode on or off (default: model's)")
    ap.add_argument("--effort", choices=("none", "low", "medium", "high"), help="reasoning_effort")
    ap.add_argument("--temperature", type=float, help="ignored by MiMo while thinking is on")
    ap.add_argument("--no-stream", action="store_true", help="one response instead of streaming")
    ap.add_argument("--hide-reasoning", action="store_true", help="do not print reasoning to stderr")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object (content, reasoning, finish_reason, usage) instead of text")
    ap.add_argument("--list-models", action="store_true", help="list the model ids the key can use")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds; long prompts can take minutes")
    ap.add_argument("--retries", type=int, default=2, help="retries for 429/5xx (default 2)")
    ap.add_argument("--retry-wait", type=float, default=2.0, help="first backoff in seconds (doubles)")
    args = ap.parse_args(argv)
    if not 1 <= args.max_tokens <= MAX_COMPLETION_TOKENS:
        ap.error(f"--max-tokens must be between 1 and {MAX_COMPLETION_TOKENS}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    key = (args.api_key or os.environ.get("MIMO_API_KEY") or "").strip()
    if not key:
        raise ChatError("no MiMo key: set MIMO_API_KEY (sk-... for pay-as-you-go, tp-... for a token plan) "
                        "or pass --api-key", EXIT_USAGE)
    base = resolve_base_url(args.base_url, key)
    ctx = {"model": args.model, "base": base, "key": key, "auth": args.auth}

    if args.list_models:
        resp = send(lambda: urllib.request.Request(f"{base}/models", headers=headers_for(key, args.auth, False)),
                    args, ctx)
        with resp:
            data = json.loads(resp.read() or b"{}")
        ids = sorted(m.get("id", "") for m in data.get("data", []) if isinstance(m, dict))
        print(json.dumps(ids) if args.json else "\n".join(ids))
        return 0

    words = args.prompt
    prompt = sys.stdin.read() if words == ["-"] else " ".join(words)
    body = build_body(args, prompt.strip() if prompt else "")
    payload = json.dumps(body).encode("utf-8")

    def factory():
        return urllib.request.Request(f"{base}/chat/completions", data=payload, method="POST",
                                      headers=headers_for(key, args.auth, body["stream"]))

    printer = Printer(show_reasoning=not args.hide_reasoning, quiet=args.json)
    resp = send(factory, args, ctx)
    with resp:
        result = read_stream(resp, printer, ctx) if body["stream"] else read_whole(resp, printer, ctx)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    if result["finish_reason"] in ("length", "repetition_truncation"):
        print(f"mimo_chat: warning: the answer was cut off (finish_reason={result['finish_reason']}); "
              "raise --max-tokens or ask for less", file=sys.stderr)
    elif result["finish_reason"] == "content_filter":
        print("mimo_chat: warning: MiMo's content filter stopped the answer", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ChatError as exc:
        print(f"mimo_chat: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
