"""Reading YAML files so that errors can name the line they are about.

PyYAML's composer keeps the position of every node; `read_yaml` returns the
plain data together with the line of each key path, so a validation error on
`rules.2.ports.0` can be reported as `policy.yaml:14`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from netwatch.errors import ConfigError

KeyPath = tuple[str | int, ...]


def _scalar(node: yaml.Node) -> Any:
    return yaml.SafeLoader("").construct_object(node, deep=True)


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: object, line: int, first: int) -> None:
        super().__init__(f"duplicate key {key!r} (first on line {first})")
        self.line = line


def _plain(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        data: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if key in data:
                # YAML would quietly keep the last one; a typo'd copy wins.
                first = lines.get((*path, str(key)), 0)
                raise DuplicateKeyError(key, key_node.start_mark.line + 1, first)
            data[key] = _plain(value_node, (*path, str(key)), lines)
            lines[(*path, str(key))] = key_node.start_mark.line + 1
        return data
    if isinstance(node, yaml.SequenceNode):
        return [
            _plain(item, (*path, index), lines) for index, item in enumerate(node.value)
        ]
    return _scalar(node)


def read_yaml(path: Path) -> tuple[Any, dict[KeyPath, int]]:
    """The file's data (None when empty) and the line of every key path."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError([f"{path}: cannot read: {reason}"]) from exc

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        opened = getattr(exc, "context_mark", None)
        if opened is not None and mark is not None and opened.line != mark.line:
            context = getattr(exc, "context", None) or "it started"
            problem += f" ({context} on line {opened.line + 1})"
        raise ConfigError([f"{where}: not valid YAML: {problem}"]) from exc

    lines: dict[KeyPath, int] = {}
    if node is None:
        return None, lines
    try:
        return _plain(node, (), lines), lines
    except DuplicateKeyError as exc:
        raise ConfigError([f"{path}:{exc.line}: {exc}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from exc


def line_of(lines: dict[KeyPath, int], location: KeyPath) -> int | None:
    """The line of `location`, or of its nearest parent the file has."""
    path = tuple(str(p) if not isinstance(p, int) else p for p in location)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())
