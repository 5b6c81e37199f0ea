"""Offline replay of a recorded session through the normal proxy path.

    mitmdump -s addon/mimo.py --set mimo_replay=session.mitm      (or: python3 launch.py replay session.mitm)

With `mimo_replay` set, the provider is a local server (mimo2codex.sessions.replay.ReplayUpstream) that
plays the recorded upstream answers, and `mimo_base_url` is pointed at it, so the proxy's own
retries go there too. The real key is replaced by a placeholder in this process: a replay never
needs it and never sends it anywhere. Each translated request is matched against the recording
by the Responses request Codex sent (tolerant of Codex's volatile fields, see
mimo2codex.sessions.recording) and the matched exchange is named to the server in a header; the flow's
metadata `m2c.replay` says which one and by which rule ("#3 exact", "#4 order", ...).
"""

from __future__ import annotations

import json
import logging
import os

from mitmproxy import ctx, exceptions, http

from addon import reloading
from mimo2codex.sessions import replay as replay_server
from mimo2codex.sessions.recording import Matcher

log = logging.getLogger("mimo2codex.replay")
META = "m2c."


class Playing:
    """The replay in progress: the file, its stand-in provider and the recordings served so far."""

    def __init__(self) -> None:
        self.path = ""
        self.server: replay_server.ReplayUpstream | None = None
        self.matcher: Matcher | None = None


# Module level: a reload of addon/mimo.py builds a new Replay, and the replay must go on where it
# was (same server, same recordings already used), not start over on a new port.
_PLAYING = Playing()


class Replay:
    def __init__(self) -> None:
        self.playing = _PLAYING

    def load(self, loader) -> None:
        loader.add_option("mimo_replay", str, "",
                          "Replay a recorded session (a flow file from `launch.py record` or `-w`): the provider is "
                          "replaced by a local server playing the recorded answers. No key, no network.")
        loader.add_option("mimo_replay_pace", int, 0, "Replay: milliseconds between recorded upstream events (0 = as fast as possible).")

    def configure(self, updated: set[str]) -> None:
        if "mimo_replay" not in updated and "mimo_replay_pace" not in updated:
            return
        p = self.playing
        path = ctx.options.mimo_replay
        if p.server is not None and path != p.path:
            p.server.stop()
            p.server = p.matcher = None
        if p.server is not None:  # same file (a pace change, or a reload of addon/mimo.py): go on
            p.server.pace = ctx.options.mimo_replay_pace / 1000
            return
        if not path:
            return
        from addon import flowfile  # reads with mitmproxy.io

        try:
            exchanges = flowfile.load(path)
        except (OSError, ValueError) as e:
            raise exceptions.OptionsError(f"mimo_replay: {e}") from None
        translated = [e for e in exchanges if e.translated]
        if not translated:
            raise exceptions.OptionsError(f"mimo_replay: {path} holds no translated /v1/responses exchange to replay")
        p.matcher = Matcher(exchanges, side="responses")
        p.server = replay_server.ReplayUpstream(exchanges, pace=ctx.options.mimo_replay_pace / 1000).start()
        p.path = path
        translate = ctx.master.addons.get("mimotranslate")
        key_env = translate.key_env() if translate is not None else "MIMO_API_KEY"
        os.environ[key_env] = replay_server.PLACEHOLDER_KEY
        ctx.options.update(mimo_base_url=p.server.base_url)
        log.warning("replaying %d recorded exchanges from %s (provider stand-in at %s; no key, no network)",
                    len(translated), path, p.server.base_url)

    def request(self, flow: http.HTTPFlow) -> None:
        matcher = self.playing.matcher
        if matcher is None or flow.response is not None or not flow.live:
            return
        raw = flow.metadata.get(META + "responses_request")
        if raw is None:
            return
        try:
            exchange, rule = matcher.match(json.loads(raw))
        except ValueError:
            exchange, rule = None, "none"
        flow.request.headers[replay_server.HEADER] = str(exchange.index) if exchange else "none"
        flow.metadata[META + "replay"] = f"#{exchange.index} {rule}" if exchange else "no recorded answer left"
        if rule not in ("exact", "repeat"):
            log.warning("replay: request matched recording #%s by %s only", exchange.index if exchange else "-", rule)

    def done(self) -> None:
        p = self.playing
        if p.server is not None and reloading.shutting_down():
            p.server.stop()
            p.server = p.matcher = None
            p.path = ""
