"""The expectation policy: a written design that overrides the topology.

A policy file names groups of containers and says which groups may reach
which, and on which ports:

    groups:
      web: {services: [web]}            # Compose service names (globs)
      api: {names: ["shop-api-*"]}      # container names (globs)
      db:  {labels: {tier: db}}         # labels (value globs), all must match
    rules:                              # first match wins, like a firewall
      - allow: {from: api, to: db, ports: [5432]}
      - deny:  {from: "*", to: db}      # db: from api on 5432, nothing else
      - allow: {from: web, to: api}
    default: topology                   # for pairs no rule names: topology,
                                        # allow or deny

How a pair (src, dst) is judged:
- reachability: the first rule naming src and dst decides (allow: reachable,
  deny: isolated), except a deny that lists ports, which only closes those
  ports; with no such rule, `default` decides;
- a port p of dst: the first rule naming src and dst and covering p (no
  `ports`, or p among them) decides: allow with ports means p must be open,
  deny means p must be closed; an allow without ports asserts nothing about
  single ports. Ports named by a rule are probed even when dst does not
  expose them.

Pure: loading (with errors that name the line) and deciding.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from netwatch.containers import ContainerInfo
from netwatch.errors import ConfigError
from netwatch.validation import shorten
from netwatch.yamlfile import KeyPath, line_of, read_yaml

ANY = "*"


def _not_a_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a port number")
    return value


Port = Annotated[int, BeforeValidator(_not_a_bool), Field(ge=1, le=65535)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class GroupSpec(_Strict):
    """Who belongs: any name or service glob, and every label given."""

    names: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _says_something(self) -> GroupSpec:
        if not (self.names or self.services or self.labels):
            raise ValueError("a group needs names, services or labels")
        return self

    def matches(self, info: ContainerInfo) -> bool:
        if self.labels and not all(
            key in info.labels and fnmatch.fnmatchcase(info.labels[key], pattern)
            for key, pattern in self.labels.items()
        ):
            return False
        if not (self.names or self.services):
            return True
        service = info.compose_service
        by_name = any(fnmatch.fnmatchcase(info.name, p) for p in self.names)
        # A container outside Compose has no service for a glob to match.
        by_service = service is not None and any(
            fnmatch.fnmatchcase(service, p) for p in self.services
        )
        return by_name or by_service


class EdgeSpec(_Strict):
    sources: tuple[str, ...] = Field(alias="from")
    destinations: tuple[str, ...] = Field(alias="to")
    ports: tuple[Port, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _one_or_many(cls, data: object) -> object:
        """`from: web` means `from: [web]`; `ports: 5432` means `ports: [5432]`."""
        if not isinstance(data, dict):
            return data
        lifted = dict(data)
        for key in ("from", "to"):
            if isinstance(lifted.get(key), str):
                lifted[key] = [lifted[key]]
        ports = lifted.get("ports")
        if isinstance(ports, int | str):
            lifted["ports"] = [ports]
        elif ports is not None and not isinstance(ports, list | tuple):
            raise ValueError("ports is a port number or a list of port numbers")
        return lifted


class RuleSpec(_Strict):
    allow: EdgeSpec | None = None
    deny: EdgeSpec | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> RuleSpec:
        if (self.allow is None) == (self.deny is None):
            raise ValueError("a rule is either `allow: {...}` or `deny: {...}`")
        return self

    @property
    def edge(self) -> EdgeSpec:
        edge = self.allow or self.deny
        assert edge is not None
        return edge


class PolicySpec(_Strict):
    groups: dict[str, GroupSpec] = Field(default_factory=dict)
    rules: tuple[RuleSpec, ...] = ()
    default: Literal["topology", "allow", "deny"] = "topology"

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: object) -> object:
        """`rules:` with nothing under it is no rules, not an error."""
        if isinstance(data, dict):
            return {
                k: v
                for k, v in data.items()
                if not (k in ("groups", "rules") and v is None)
            }
        return data


@dataclass(frozen=True)
class Rule:
    index: int
    line: int | None
    allow: bool
    sources: tuple[str, ...]
    destinations: tuple[str, ...]
    ports: tuple[int, ...]

    @property
    def where(self) -> str:
        return f"rule {self.index + 1}" + (f" (line {self.line})" if self.line else "")


@dataclass(frozen=True)
class Decision:
    """What the policy says of one pair: None where it says nothing."""

    expected_reachable: bool | None
    basis: str | None
    # Port -> must be open (True) or closed (False).
    ports: Mapping[int, bool]
    # Port -> the rule that decided it ("rule 2 (line 8)").
    port_rules: Mapping[int, str] = field(default_factory=dict)

    def ports_text(self) -> str:
        """`5432 open (rule 1 (line 7)), 22 closed (rule 2 (line 8))`."""
        words = []
        for port, must_open in sorted(self.ports.items()):
            state = "open" if must_open else "closed"
            words.append(f"{port} {state} ({self.port_rules.get(port, 'policy')})")
        return ", ".join(words)


@dataclass(frozen=True)
class Policy:
    source: str
    groups: Mapping[str, GroupSpec]
    rules: tuple[Rule, ...]
    default: str

    def members(self, info: ContainerInfo) -> frozenset[str]:
        return frozenset(
            name for name, group in self.groups.items() if group.matches(info)
        )

    def decide(self, src: ContainerInfo, dst: ContainerInfo) -> Decision:
        src_groups, dst_groups = self.members(src), self.members(dst)
        naming = [
            rule
            for rule in self.rules
            if _names(rule.sources, src_groups)
            and _names(rule.destinations, dst_groups)
        ]

        expected: bool | None = None
        basis: str | None = None
        for rule in naming:
            if rule.allow or not rule.ports:
                expected = rule.allow
                verb = "allows" if rule.allow else "denies"
                basis = f"policy {rule.where} {verb}"
                break
        if expected is None and self.default != "topology":
            expected = self.default == "allow"
            basis = f"policy default {self.default}"

        ports: dict[int, bool] = {}
        port_rules: dict[int, str] = {}
        for port in sorted(
            {p for rule in naming for p in rule.ports} | set(dst.probe_ports)
        ):
            for rule in naming:
                if rule.ports and port not in rule.ports:
                    continue
                if rule.ports or not rule.allow:
                    ports[port] = rule.allow
                    port_rules[port] = rule.where
                break
        return Decision(expected, basis, ports, port_rules)


def _names(patterns: tuple[str, ...], groups: frozenset[str]) -> bool:
    return ANY in patterns or any(pattern in groups for pattern in patterns)


def _key(location: KeyPath) -> str:
    """A key path as people count: rules from 1 (`rule 2: allow.from`)."""
    if len(location) >= 2 and location[0] == "rules" and isinstance(location[1], int):
        rest = ".".join(str(part) for part in location[2:])
        return f"rule {location[1] + 1}" + (f": {rest}" if rest else "")
    return ".".join(str(part) for part in location) or "(top level)"


def _problem(error: ErrorDetails, lines: dict[KeyPath, int], path: Path) -> str:
    # pydantic names aliased fields (`from`) by alias: keys as written.
    location: KeyPath = tuple(error["loc"])
    line = line_of(lines, location)
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    where = f"{path}:{line}" if line else str(path)
    return f"{where}: {_key(location)}: {message}"


def _reference_problems(
    data: dict[str, Any], lines: dict[KeyPath, int], path: Path
) -> list[str]:
    """Groups the rules name that the file does not define, read from the
    raw data so that they are reported with every other problem at once."""
    groups = data.get("groups")
    known = set(groups) if isinstance(groups, dict) else set()
    shown = ", ".join(sorted(map(str, known))) or "none"
    problems = []
    if ANY in known:
        line = line_of(lines, ("groups", ANY))
        problems.append(
            f"{path}:{line}: groups: '*' means any container, it cannot be a group"
        )
    rules = data.get("rules")
    for index, rule in enumerate(rules if isinstance(rules, list) else []):
        if not isinstance(rule, dict):
            continue
        for effect in ("allow", "deny"):
            edge = rule.get(effect)
            if not isinstance(edge, dict):
                continue
            for key in ("from", "to"):
                names = edge.get(key)
                listed = [names] if isinstance(names, str) else names
                for name in listed if isinstance(listed, list) else []:
                    if isinstance(name, str) and name != ANY and name not in known:
                        location = ("rules", index, effect, key)
                        problems.append(
                            f"{path}:{line_of(lines, location)}: {_key(location)}: "
                            f"no group named {shorten(name)} (groups: {shown})"
                        )
    return problems


def load_policy(path: Path) -> Policy:
    """Reads and checks a policy file; every problem is reported at once, each
    naming the line and what is wrong."""
    data, lines = read_yaml(path)
    if data is None or data == {}:
        message = "the policy is empty; write groups and rules, or leave it out"
        raise ConfigError([f"{path}: {message}"])
    if not isinstance(data, dict):
        raise ConfigError([f"{path}:1: a policy is a mapping with groups and rules"])

    problems = _reference_problems(data, lines, path)
    spec = None
    try:
        spec = PolicySpec.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(e, lines, path) for e in exc.errors()] + problems
    if problems or spec is None:
        raise ConfigError(problems)

    rules = tuple(
        Rule(
            index=index,
            line=line_of(lines, ("rules", index)),
            allow=rule.allow is not None,
            sources=rule.edge.sources,
            destinations=rule.edge.destinations,
            ports=rule.edge.ports,
        )
        for index, rule in enumerate(spec.rules)
    )
    return Policy(
        source=str(path), groups=spec.groups, rules=rules, default=spec.default
    )
