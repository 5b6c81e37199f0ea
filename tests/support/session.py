"""A small Codex-shaped session driver for record/replay tests.

Each run builds its requests the way Codex does, including the fields that differ between two runs
of the same session (prompt_cache_key, client_metadata, item ids, the date in
<environment_context>, "Wall time"/"Chunk ID" in tool outputs), so a replay has to match tolerantly.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from mimo2codex.sessions import eventlist

ROOT = Path(__file__).resolve().parents[2]

CODEX_BEARER = "codex-bearer-secret-5a7c2e"
CODEX_COOKIE = "m2c_session=cookie-secret-91be44"
TOOLS = [
    {"type": "function", "name": "exec_command", "description": "Run a shell command.", "strict": False,
     "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"],
                    "additionalProperties": False}},
]

# What the fake MiMo answers, turn by turn (queued in this order when recording).
REPLIES = [
    {"reasoning": "The user wants the files listed; I'll run ls.",
     "tool_calls": [{"name": "exec_command", "arguments": json.dumps({"cmd": "ls"})}]},
    {"reasoning": "ls printed two files.", "text": "There are two files: README.md and launch.py."},
    {"reasoning": "Writing a long answer", "text": "This answer will be cut off " * 8, "cut_after": 6},
    {"error": {"status": 400, "message": "Param Incorrect", "param": "messages too long"}},
]


@dataclass
class Run:
    port: int
    variant: int
    answers: list[tuple[int, bytes]] = field(default_factory=list)

    def post(self, body: dict) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("POST", "/v1/responses", json.dumps(body).encode(),
                         {"content-type": "application/json", "accept": "text/event-stream",
                          "authorization": f"Bearer {CODEX_BEARER}", "cookie": CODEX_COOKIE,
                          "session-id": str(uuid.uuid4())})
            resp = conn.getresponse()
            answer = (resp.status, resp.read())
        finally:
            conn.close()
        self.answers.append(answer)
        return answer

    def get(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path, headers={"authorization": f"Bearer {CODEX_BEARER}"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()


def _msg(role: str, text: str) -> dict:
    return {"type": "message", "id": f"msg_{uuid.uuid4()}", "role": role, "content": [{"type": "input_text", "text": text}]}


def _body(session: str, turn: int, items: list[dict]) -> dict:
    return {"model": "mimo-v2.5-pro", "stream": True, "input": items, "tools": TOOLS, "tool_choice": "auto",
            "parallel_tool_calls": True, "reasoning": {"effort": "medium"}, "store": False,
            "include": ["reasoning.encrypted_content"], "prompt_cache_key": session,
            "client_metadata": {"session_id": session, "turn_id": str(uuid.uuid4()), "x-codex-window-id": f"{session}:{turn}"}}


def done_items(body: bytes) -> list[dict]:
    return [e["item"] for e in eventlist.parse_events(body)
            if isinstance(e, dict) and e.get("type") == "response.output_item.done"]


def run_session(port: int, variant: int) -> Run:
    """Four model requests (tool call, tool output → answer, a cut-off stream, an upstream 400) and
    a GET /v1/models, with this variant's volatile values."""
    run = Run(port, variant)
    session = str(uuid.uuid4())
    history = [_msg("developer", "You are Codex, a coding agent."),
               _msg("user", f"<environment_context>\n  <cwd>/tmp/work</cwd>\n  <current_date>2026-11-{20 + variant}"
                            f"</current_date>\n</environment_context>"),
               _msg("user", "What files are here?")]
    run.get("/v1/models")
    _, first = run.post(_body(session, 1, history))
    items = done_items(first)
    call = next(i for i in items if i["type"] == "function_call")
    history += items + [{"type": "function_call_output", "id": f"fco_{uuid.uuid4()}", "call_id": call["call_id"],
                         "output": f"Chunk ID: {uuid.uuid4().hex[:6]}\nWall time: 0.0{variant}31 seconds\n"
                                   f"Process exited with code 0\nOutput:\nREADME.md\nlaunch.py\n"}]
    _, second = run.post(_body(session, 2, history))
    history += done_items(second) + [_msg("user", "Now explain it at length.")]
    run.post(_body(session, 3, history))
    history += [_msg("user", "Try again, shorter.")]
    run.post(_body(session, 4, history))
    return run


# ------------------------------------------------------------------------------------------------
# launch.py subcommands as processes


def cli_proc(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """`python3 launch.py ARGS` as launch.py runs it once inside the venv."""
    code = "import sys; from mimo2codex.cli import commands as cli; sys.exit(cli.main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=env, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def clean_env(**extra: str) -> dict:
    """The test's environment without any provider key or URL, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in ("MIMO_API_KEY", "MIMO_BASE_URL")}
    env.update(extra)
    return env
