"""What a reload may change while the daemon runs, and what waits for a restart.

A reload (SIGHUP, or `POST /-/reload`) reads the configuration and the policy
again, through the same layers as at startup. Most settings take effect at
once. A few are bound to things made once at startup (the connection to the
engine, the listening socket, the probe engine's choice, the log renderer):
a new value for one of those is kept for the next start, said so in the log,
and the running value stays. A configuration that fails validation changes
nothing at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from netwatch.config import Config
from netwatch.policy import Policy

KeyPath = tuple[str, ...]

# Reads the configuration and the policy again, as at startup; raises
# ConfigError naming every problem.
ConfigSource = Callable[[], tuple[Config, Policy | None]]

# Settings read once at startup.
RESTART_ONLY: tuple[KeyPath, ...] = (
    ("docker",),
    ("http", "listen"),
    ("http", "web_config_file"),
    ("probes", "engine"),
    ("log", "format"),
)


@dataclass(frozen=True)
class ReloadedConfig:
    """The configuration to run with after a reload, and what differs."""

    config: Config
    # Top-level sections whose running values change.
    changed: frozenset[str]
    # Dotted keys whose new values wait for a restart.
    needs_restart: tuple[str, ...]


def _get(values: Mapping[str, Any], path: KeyPath) -> Any:
    for key in path:
        if not isinstance(values, Mapping) or key not in values:
            return None
        values = values[key]
    return values


def _set(values: dict[str, Any], path: KeyPath, value: Any) -> None:
    *parents, last = path
    for key in parents:
        values = values.setdefault(key, {})
    values[last] = value


def merge_reloaded(running: Config, loaded: Config) -> ReloadedConfig:
    """`loaded`, with the running values kept for the restart-only keys."""
    old = running.model_dump(by_alias=True)
    new = loaded.model_dump(by_alias=True)

    needs_restart = []
    for path in RESTART_ONLY:
        if _get(old, path) != _get(new, path):
            needs_restart.append(".".join(path))
            _set(new, path, _get(old, path))
    effective = Config.model_validate(new)

    changed = frozenset(
        section
        for section in new
        if getattr(running, section) != getattr(effective, section)
    )
    return ReloadedConfig(effective, changed, tuple(needs_restart))


@dataclass(frozen=True)
class ReloadOutcome:
    """What a reload did, as the log and `POST /-/reload` tell it."""

    ok: bool
    problems: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    needs_restart: tuple[str, ...] = ()

    @classmethod
    def failed(cls, problems: Sequence[str]) -> ReloadOutcome:
        return cls(ok=False, problems=tuple(problems))

    def describe(self) -> str:
        """A few lines for a person: what changed, or why nothing did."""
        if not self.ok:
            lines = ["reload failed; the running configuration stays:"]
            return "\n".join([*lines, *(f"  {p}" for p in self.problems)]) + "\n"
        changed = ", ".join(self.changed) or "nothing"
        lines = [f"configuration reloaded; changed: {changed}"]
        if self.needs_restart:
            waiting = ", ".join(self.needs_restart)
            lines.append(f"these take effect at the next start: {waiting}")
        return "\n".join(lines) + "\n"
