"""Whether a translated stream keeps both sides of its answer for the flow: only when something reads them.

The Tee (addon/tee.py) can keep every provider chunk and every translated chunk of a stream, joined at
its end into the response's content and `m2c.client_body`. Plain mitmproxy streaming keeps nothing,
and at 256 concurrent streams keeping both sides cost ~30 MB of RSS. The readers of those bodies:

- a flow store: mitmweb and mitmproxy's console have the `view` addon (mitmdump has none);
- a save file (`save_stream_file`, `-w`): mitmproxy's Save, and with it addon/recorder.py, write the
  flow at its end;
- mitmdump's dumper at `flow_detail >= 3`, which prints bodies.

Another `-s` script reading `flow.response.content` in `response` is not detected: plain mitmproxy
gives it nothing for a streamed answer either; `mimo_keep_bodies=always` keeps them for it. A flow
whose bodies were not kept says so in `m2c.bodies` (the response's content stays None, "content
missing", never an empty body); the summary, the final Response and the one-line comment do not
depend on the bodies.
"""

from __future__ import annotations

from mitmproxy import ctx

MODES = ("auto", "always", "never")
HELP = ("Keep both sides of a streamed translated answer (the provider's chunks as the response body, the client's "
        "in m2c.client_body): auto = when a flow store (mitmweb, console), a save file or flow_detail >= 3 will "
        "read them; always; never.")


def readers() -> list[str]:
    """Who would read a translated flow's bodies in this process (empty: nobody)."""
    found = []
    if ctx.master.addons.get("view") is not None:
        found.append("flow store")
    if getattr(ctx.options, "save_stream_file", ""):  # Save's option: absent in a master without it
        found.append("save file")
    if ctx.master.addons.get("dumper") is not None and ctx.options.flow_detail >= 3:
        found.append("flow_detail >= 3")
    return found


def dropped() -> str:
    """Why a stream starting now keeps no bodies, for `m2c.bodies`; "" when it keeps them."""
    mode = ctx.options.mimo_keep_bodies
    if mode == "always" or (mode == "auto" and readers()):
        return ""
    if mode == "never":
        return "not kept (mimo_keep_bodies=never)"
    return ("not kept: no flow store, no save file, flow_detail < 3 "
            "(mimo_keep_bodies=auto; set it to always to keep them)")
