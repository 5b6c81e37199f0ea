"""mimo2codex: run the OpenAI Codex CLI/app on Xiaomi MiMo (and other Chat Completions providers)."""

__version__ = "0.2.0"
