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


class AliasError(yaml.YAMLError):
    """An alias that contains itself, or aliases that expand past reason."""

    def __init__(self, problem: str, line: int) -> None:
        super().__init__(problem)
        self.line = line


# Nodes a file may expand to once its aliases are followed: far beyond any
# configuration, far below what an alias bomb ("billion laughs") reaches.
_MAX_NODES = 100_000


class _Reader:
    """Turns composed nodes into plain data, noting the line of each key
    path. Aliases share node objects, so the nodes form a graph: one that
    contains itself is refused, and so is one that expands too far."""

    def __init__(self, lines: dict[KeyPath, int]) -> None:
        self.lines = lines
        self._open: set[int] = set()
        self._nodes = 0

    def plain(self, node: yaml.Node, path: KeyPath) -> Any:
        line = node.start_mark.line + 1
        self._nodes += 1
        if self._nodes > _MAX_NODES:
            raise AliasError(
                f"more than {_MAX_NODES} values once its aliases are expanded", line
            )
        if id(node) in self._open:
            # The node is the anchored one: its own line is the anchor's.
            raise AliasError(
                "an alias refers to a value that contains it "
                f"(anchored on line {line})",
                self.lines.get(path[:-1], line),
            )
        self.lines[path] = line
        if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            return _scalar(node)
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [
                    self.plain(item, (*path, index))
                    for index, item in enumerate(node.value)
                ]
            data: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = _scalar(key_node)
                if key in data:
                    # YAML would quietly keep the last one; a typo'd copy wins.
                    first = self.lines.get((*path, str(key)), 0)
                    raise DuplicateKeyError(key, key_node.start_mark.line + 1, first)
                data[key] = self.plain(value_node, (*path, str(key)))
                self.lines[(*path, str(key))] = key_node.start_mark.line + 1
            return data
        finally:
            self._open.discard(id(node))


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
        return _Reader(lines).plain(node, ()), lines
    except (DuplicateKeyError, AliasError) as exc:
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
