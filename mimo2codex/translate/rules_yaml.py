"""YAML for the rules files: PyYAML's safe loader, keeping the line of every mapping, key and list item.

The lines make RulesError point at file:line. Knows nothing of the rules language (rules_schema.py).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

YAMLError = yaml.YAMLError


class _Map(dict):
    """A YAML mapping that remembers its line and each key's line (1-based), for error messages."""

    line: int | None = None
    lines: dict


class _Seq(list):
    line: int | None = None
    lines: dict


class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader keeping line numbers, refusing duplicate keys, with YAML 1.2 booleans (only
    true/false: `no`, `on`, `yes` stay strings, as a model id or a value in a rules file means them)."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _construct_map(loader: _Loader, node: yaml.MappingNode):
    data = _Map()
    data.line, data.lines = node.start_mark.line + 1, {}
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        if key in data.lines:
            raise yaml.constructor.ConstructorError(None, None, f"found duplicate key {key!r}", key_node.start_mark)
        data.lines[key] = key_node.start_mark.line + 1
        data[key] = loader.construct_object(value_node)


def _construct_seq(loader: _Loader, node: yaml.SequenceNode):
    data = _Seq()
    data.line, data.lines = node.start_mark.line + 1, {}
    yield data
    for i, item in enumerate(node.value):
        data.lines[i] = item.start_mark.line + 1
        data.append(loader.construct_object(item))


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def line_of(node: Any, key: Any = None) -> int | None:
    """The 1-based line of `node` (a mapping or list from parse), or of its `key`; None for anything else."""
    if not isinstance(node, (_Map, _Seq)):
        return None
    return node.lines.get(key, node.line) if key is not None else node.line


def parse(text: str) -> Any:
    """A YAML document -> plain dicts/lists that remember their lines (see line_of)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
