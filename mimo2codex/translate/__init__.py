"""The translator core: Responses <-> Chat Completions, rules, errors. No mitmproxy import."""
