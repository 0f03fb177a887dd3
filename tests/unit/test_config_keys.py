"""Every configuration key, found by walking the schema of `Config`, refused
clearly when it is given a value of the wrong type, a value out of its range,
or a misspelt name: the problem names the dotted key and, for the file, the
line that sets it. A key added later is covered without editing this file.

tests/unit/test_config.py checks the layering and a few hand-picked values;
this file checks that no key is left out.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import annotated_types
import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from netwatch.config import ENV_NESTING, ENV_PREFIX, Config, load_config
from netwatch.errors import ConfigError

KeyPath = tuple[str | int, ...]

# Text no pattern or check of a text setting accepts: no scheme, no port, no
# such file.
BAD_TEXT = "/no such/thing"


@dataclass(frozen=True)
class Leaf:
    """One setting: where it sits, its field, and the model that holds it."""

    path: KeyPath
    field: FieldInfo
    owner: type[BaseModel]

    @property
    def dotted(self) -> str:
        return ".".join(map(str, self.path))

    @property
    def name(self) -> str:
        return str(self.path[-1])


@dataclass(frozen=True)
class BadValue:
    """A value a leaf must refuse, as YAML data and as environment text."""

    leaf: Leaf
    why: str
    value: Any
    # None where text cannot be wrong (any text is a valid string).
    env_text: str | None

    @property
    def id(self) -> str:
        return f"{self.leaf.dotted}-{self.why}"


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """The type under Optional and Annotated, and the metadata met on the way."""
    metadata: list[Any] = []
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation, *extra = typing.get_args(annotation)
            for item in extra:
                metadata += item.metadata if isinstance(item, FieldInfo) else [item]
            continue
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            others = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(others) == 1:
                annotation = others[0]
                continue
        return annotation, metadata


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _item_model(annotation: Any) -> type[BaseModel] | None:
    """The model of `tuple[Model, ...]` (a list of settings blocks), or None."""
    if typing.get_origin(annotation) is tuple:
        item = typing.get_args(annotation)[0]
        return item if _is_model(item) else None
    return None


def walk(model: type[BaseModel], prefix: KeyPath = ()) -> Iterator[Leaf]:
    """Every leaf key under `model`; a list of blocks is walked through its
    first item, and is itself a leaf too (it can be given a non-list)."""
    for name, field in model.model_fields.items():
        path = (*prefix, field.alias or name)
        annotation, _ = _unwrap(field.annotation)
        if _is_model(annotation):
            yield from walk(annotation, path)
            continue
        yield Leaf(path, field, model)
        item = _item_model(annotation)
        if item is not None:
            yield from walk(item, (*path, 0))


LEAVES = list(walk(Config))


def _kind(leaf: Leaf) -> Any:
    annotation, _ = _unwrap(leaf.field.annotation)
    if typing.get_origin(annotation) is Literal:
        return Literal
    if _item_model(annotation) is not None:
        return tuple
    return typing.get_origin(annotation) or annotation


# A value of the wrong type for each kind of setting, and the same mistake as
# an environment variable (None: all text is a valid string, or path).
WRONG_TYPE: dict[Any, tuple[Any, str | None]] = {
    bool: ("maybe", "maybe"),
    int: ("many", "many"),
    float: ("fast", "fast"),
    str: (10980, None),
    Path: (10980, None),
    Literal: (5, "5"),
    dict: (["a", "list"], '["a", "list"]'),
    tuple: ("http://127.0.0.1:9093", "http://127.0.0.1:9093"),
}


def _metadata(leaf: Leaf) -> list[Any]:
    return list(leaf.field.metadata) + _unwrap(leaf.field.annotation)[1]


def _beyond(bound: float, kind: Any, direction: int) -> float:
    """A value just past `bound`: by one for counts, by 5% (at least 0.05)
    for other numbers."""
    step = 1 if kind is int else max(abs(bound), 1) / 20
    return bound + direction * step


def _has_check(leaf: Leaf) -> bool:
    """Whether a field validator of the model holding `leaf` checks it."""
    validators = leaf.owner.__pydantic_decorators__.field_validators.values()
    return any(leaf.name in v.info.fields for v in validators)


def out_of_range(leaf: Leaf) -> Iterator[tuple[str, Any]]:
    """One value past each bound the field declares."""
    kind = _kind(leaf)
    for item in _metadata(leaf):
        if isinstance(item, annotated_types.Ge):
            yield f"below-{item.ge}", _beyond(float(item.ge), kind, -1)
        elif isinstance(item, annotated_types.Gt):
            yield f"at-{item.gt}", item.gt
        elif isinstance(item, annotated_types.Le):
            yield f"above-{item.le}", _beyond(float(item.le), kind, +1)
        elif isinstance(item, annotated_types.Lt):
            yield f"at-{item.lt}", item.lt
        elif getattr(item, "pattern", None):
            assert not re.search(item.pattern, BAD_TEXT), leaf.dotted
            yield "pattern", BAD_TEXT
    if kind is Literal:
        yield "choice", "no-such-choice"
    if kind in (str, Path) and _has_check(leaf):
        yield "checked", BAD_TEXT


def _number(value: Any, kind: Any) -> Any:
    return int(value) if kind is int and isinstance(value, float) else value


def bad_values(leaf: Leaf) -> Iterator[BadValue]:
    kind = _kind(leaf)
    if kind in WRONG_TYPE:
        value, env_text = WRONG_TYPE[kind]
        yield BadValue(leaf, "type", value, env_text)
    for why, value in out_of_range(leaf):
        value = _number(value, kind)
        yield BadValue(leaf, why, value, str(value))


BAD_VALUES = [bad for leaf in LEAVES for bad in bad_values(leaf)]


def example(field: FieldInfo) -> Any:
    """A value the field accepts: its default, else its first example, else
    None (a factory's default, or a value netwatch fills in)."""
    if field.default is not PydanticUndefined:
        default = field.default
        return str(default) if isinstance(default, Path) else default
    return field.examples[0] if field.examples else None


def _required_siblings(leaf: Leaf) -> dict[str, Any]:
    """Values for the required keys of the list item holding `leaf` (a
    webhook needs its url), so that only the key under test is wrong."""
    if not _in_a_list(leaf):
        return {}
    siblings = {
        (f.alias or name): example(f)
        for name, f in leaf.owner.model_fields.items()
        if f.is_required() and (f.alias or name) != leaf.name
    }
    assert None not in siblings.values(), "a required key needs examples="
    return siblings


def nest(leaf: Leaf, key: str, value: Any, start: int = 0) -> Any:
    """`{key: value}` placed where `leaf` sits, from `leaf.path[start:]`."""
    block: Any = {**_required_siblings(leaf), key: value}
    for part in reversed(leaf.path[start:-1]):
        block = [block] if isinstance(part, int) else {part: block}
    return block


def write_config(tmp_path: Path, leaf: Leaf, key: str, value: Any) -> tuple[Path, int]:
    """A file setting `key` beside `leaf` and nothing else, and the line of
    `key`: the last line, since the key is written last."""
    text = yaml.safe_dump(
        nest(leaf, key, value), sort_keys=False, default_flow_style=None
    )
    path = tmp_path / "netwatch.yaml"
    path.write_text(text, encoding="utf-8")
    return path, text.count("\n")


def environment(leaf: Leaf, key: str, text: str, value: Any) -> tuple[str, str]:
    """The NETWATCH_* variable that sets `key` beside `leaf`, and its text:
    `text`, or inside a list of blocks (which only the whole list, as JSON,
    can set) the list with `value` in its item."""
    names: KeyPath = (*leaf.path[:-1], key)
    if _in_a_list(leaf):
        depth = next(i for i, part in enumerate(leaf.path) if isinstance(part, int))
        names, text = leaf.path[:depth], json.dumps(nest(leaf, key, value, depth))
    return ENV_PREFIX + ENV_NESTING.join(str(n).upper() for n in names), text


def typo(name: str, siblings: set[str]) -> str:
    """A plausible slip of the finger: two letters swapped, else one doubled."""
    for i in range(len(name) - 1):
        swapped = name[:i] + name[i + 1] + name[i] + name[i + 2 :]
        if swapped != name and swapped not in siblings:
            return swapped
    return name + name[-1]


def _in_a_list(leaf: Leaf) -> bool:
    return any(isinstance(part, int) for part in leaf.path)


def _missing(leaf: Leaf) -> list[str]:
    """What a typo of a required key in a list item also costs: the key itself
    is missing (rules' thresholds are required, but filled in by netwatch)."""
    required = _in_a_list(leaf) and leaf.field.is_required()
    return [f"{leaf.dotted}: Field required"] if required else []


def problems(path: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No NETWATCH_* variable of the machine running the tests leaks in."""
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def test_the_walk_finds_every_section_and_kind():
    """The schema walk reaches nested sections, alert rules and list items, and
    knows a wrong value for every kind of setting it finds."""
    found = {leaf.dotted for leaf in LEAVES}

    assert {
        "docker.host",
        "probes.ping.count",
        "probes.bandwidth.server_deadline",
        "alerts.rules.stalled.threshold",
        "alerts.rules.broken_path.for",
        "alerts.webhooks",
        "alerts.webhooks.0.url",
        "alerts.alertmanagers.0.resend_interval",
        "policy",
    } <= found
    assert [leaf.dotted for leaf in LEAVES if _kind(leaf) not in WRONG_TYPE] == []


@pytest.mark.parametrize("bad", BAD_VALUES, ids=lambda bad: bad.id)
def test_a_bad_value_in_the_file_names_its_key_and_line(tmp_path, bad):
    """A wrong type or an out-of-range value in the file is one problem,
    naming the dotted key and the line that sets it."""
    path, line = write_config(tmp_path, bad.leaf, bad.leaf.name, bad.value)

    found = problems(path)

    assert len(found) == 1, found
    assert found[0].startswith(f"{bad.leaf.dotted}: "), found
    assert found[0].endswith(f"({path}:{line})"), found


@pytest.mark.parametrize(
    "bad",
    [bad for bad in BAD_VALUES if bad.env_text is not None],
    ids=lambda bad: bad.id,
)
def test_a_bad_value_in_the_environment_names_its_key(monkeypatch, bad):
    """The same wrong value from a NETWATCH_* variable is one problem naming
    the dotted key."""
    assert bad.env_text is not None
    variable, text = environment(bad.leaf, bad.leaf.name, bad.env_text, bad.value)
    monkeypatch.setenv(variable, text)

    found = problems()

    assert len(found) == 1, (variable, text, found)
    assert found[0].startswith(f"{bad.leaf.dotted}: "), (variable, text, found)


@pytest.mark.parametrize("leaf", LEAVES, ids=lambda leaf: leaf.dotted)
def test_a_misspelt_key_in_the_file_is_named_with_its_line(tmp_path, leaf):
    """A typo of a key's name, beside where the key belongs, is an unknown key
    named in full, with its line."""
    siblings = {f.alias or n for n, f in leaf.owner.model_fields.items()}
    wrong = typo(leaf.name, siblings)
    path, line = write_config(tmp_path, leaf, wrong, example(leaf.field))
    dotted = ".".join(map(str, (*leaf.path[:-1], wrong)))

    found = problems(path)

    assert sorted(found) == sorted(
        [f"{dotted}: unknown key ({path}:{line})", *_missing(leaf)]
    )


@pytest.mark.parametrize("leaf", LEAVES, ids=lambda leaf: leaf.dotted)
def test_a_misspelt_variable_is_named(monkeypatch, leaf):
    """A typo of a key's name in a NETWATCH_* variable is refused by the
    variable's name, or inside a JSON list by the dotted key."""
    siblings = {f.alias or n for n, f in leaf.owner.model_fields.items()}
    wrong = typo(leaf.name, siblings)
    value = example(leaf.field)
    variable, text = environment(leaf, wrong, str(value), value)
    monkeypatch.setenv(variable, text)

    found = problems()

    if _in_a_list(leaf):
        dotted = ".".join(map(str, (*leaf.path[:-1], wrong)))
        assert sorted(found) == sorted([f"{dotted}: unknown key", *_missing(leaf)])
    else:
        assert len(found) == 1
        assert found[0].startswith(f"{variable}: no such setting")


def _run(config: Path | None, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "netwatch", "run"]
    if config is not None:
        command += ["--config", str(config)]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    # An engine that is not there: had netwatch gone on, it would exit 3.
    clean["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    return subprocess.run(
        command,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _only_config_problems(stderr: str) -> list[str]:
    """The problems `netwatch run` printed; fails on any other line."""
    lines = stderr.splitlines()
    assert lines[0] == "netwatch: invalid configuration:", stderr
    assert all(line.startswith("  ") for line in lines[1:]), stderr
    return [line.strip() for line in lines[1:]]


def test_run_with_a_bad_file_exits_2_naming_every_key(tmp_path):
    """`netwatch run --config bad.yaml`, with a wrong type in every key at
    once, exits 2 before anything starts, naming each key with its line, with
    no traceback."""
    # A list of blocks is checked item by item above.
    leaves = [
        leaf for leaf in LEAVES if _kind(leaf) is not tuple and not _in_a_list(leaf)
    ]
    data: dict[str, Any] = {}
    for leaf in leaves:
        block = data
        for part in leaf.path[:-1]:
            block = block.setdefault(str(part), {})
        block[leaf.name] = WRONG_TYPE[_kind(leaf)][0]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")

    result = _run(path, {})

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    found = _only_config_problems(result.stderr)
    assert sorted(problem.split(": ")[0] for problem in found) == sorted(
        leaf.dotted for leaf in leaves
    )
    assert all(problem.endswith(")") and f"({path}:" in problem for problem in found)


def test_run_with_a_bad_variable_exits_2_naming_the_key():
    """`netwatch run` with a wrong value in a NETWATCH_* variable exits 2,
    naming the key, with no traceback."""
    result = _run(None, {"NETWATCH_ALERTS__RULES__STALLED__THRESHOLD": "5s"})

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert _only_config_problems(result.stderr) == [
        "alerts.rules.stalled.threshold: the threshold is a count of intervals "
        "(got '5s')"
    ]
