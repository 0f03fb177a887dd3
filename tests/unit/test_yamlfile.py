"""YAML files read with the line of every key: aliases that contain
themselves or expand past reason are errors that name their line."""

from __future__ import annotations

import pytest

from netwatch.errors import ConfigError
from netwatch.yamlfile import read_yaml

BOMB = "".join(
    f"{name}: &{name} [{', '.join([previous] * 9)}]\n"
    for previous, name in zip(
        ['"x"', "*a", "*b", "*c", "*d", "*e"], "abcdef", strict=True
    )
)


def problem_of(tmp_path, text: str) -> str:  # type: ignore[no-untyped-def]
    path = tmp_path / "file.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_yaml(path)
    (problem,) = caught.value.problems
    return problem


@pytest.mark.parametrize(
    ("text", "line"),
    [("a: &x [*x]\n", 1), ("groups: &g\n  a: {names: *g}\n", 2)],
    ids=["list-in-itself", "mapping-in-itself"],
)
def test_an_alias_inside_its_own_anchor_is_an_error_on_its_line(tmp_path, text, line):
    problem = problem_of(tmp_path, text)

    assert problem.endswith(
        f"file.yaml:{line}: an alias refers to a value that contains it "
        "(anchored on line 1)"
    )


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    """Nine to the sixth values from six lines: refused, not built."""
    problem = problem_of(tmp_path, BOMB)

    assert "more than 100000 values once its aliases are expanded" in problem


def test_aliases_that_repeat_a_value_are_read(tmp_path):
    path = tmp_path / "file.yaml"
    path.write_text("base: &base {a: 1}\nx: *base\ny: [*base, *base]\n")

    data, lines = read_yaml(path)

    assert data == {"base": {"a": 1}, "x": {"a": 1}, "y": [{"a": 1}, {"a": 1}]}
    assert lines[("y",)] == 3
