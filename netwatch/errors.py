"""The errors netwatch raises, in one place.

    NetwatchError
    ├── ConfigError            the configuration cannot be used (exit code 2)
    │   └── PolicyError          the expectation policy cannot be used
    ├── ListenError            the HTTP address cannot be bound
    └── DockerError            something went wrong talking to the engine
        ├── EngineUnavailableError   the engine does not answer at all
        ├── ContainerGoneError       the container no longer exists
        └── ContainerNotRunningError the container is paused, stopped or restarting

An unreachable destination is a normal probe result, never an exception. An
exception means netwatch could not measure, and callers turn it into a result
that says so, with the reason.
"""

from __future__ import annotations


class NetwatchError(Exception):
    """Root of every error netwatch raises on purpose."""


class ConfigError(NetwatchError):
    """A configuration value, file or flag cannot be used.

    `problems` lists one line per faulty key, each naming the key.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class PolicyError(ConfigError):
    """The expectation policy file cannot be used."""


class ListenError(NetwatchError):
    """The HTTP server cannot listen where it was told to."""


class DockerError(NetwatchError):
    """The Docker engine refused or failed a request."""


class EngineUnavailableError(DockerError):
    """The engine cannot be reached: socket missing, refused, or timed out."""


class ContainerGoneError(DockerError):
    """The container was removed between discovery and use."""


class ContainerNotRunningError(DockerError):
    """The container exists but cannot run an exec (paused, stopped)."""
