"""The configuration: its schema, its defaults, and how the layers combine.

Layers, each overriding the one before: the defaults written here, a YAML file
(`--config`), `NETWATCH_*` environment variables (nested keys joined by `__`,
for example `NETWATCH_PROBES__PING__INTERVAL=5s`), then command-line flags.
Validation happens once, on the combined result, and every problem is reported
with the dotted name of its key.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from netwatch.errors import ConfigError
from netwatch.validation import engine_address_problem, port_number, shorten
from netwatch.yamlfile import KeyPath, line_of, read_yaml

ENV_PREFIX = "NETWATCH_"
ENV_NESTING = "__"
DEFAULT_PORT = 10980

# Time an exec needs beyond the tools' own deadlines: the engine starting the
# process, and the watchdog in the probe script firing.
EXEC_OVERHEAD_S = 1.5

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> object:
    """Turns `500ms`, `10s`, `2m` or a bare number of seconds into seconds."""
    if isinstance(value, bool):
        # pydantic would read true as 1 second.
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(
                f"{value!r} is not a duration; write a number of seconds "
                "or a number with ms, s, m or h"
            )
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return value


_DAY = 86400.0
Duration = Annotated[
    float, BeforeValidator(parse_duration), Field(gt=0, le=_DAY, allow_inf_nan=False)
]


def _not_a_bool(value: object) -> object:
    if isinstance(value, bool):
        # pydantic would read true as 1.
        raise ValueError(f"{value!r} is not a whole number")
    return value


Count = Annotated[int, BeforeValidator(_not_a_bool)]


def parse_json_list(value: object) -> object:
    """Reads text (an environment variable) as JSON; anything else as it is.

    pydantic-settings would decode it too, but its error names only the
    top-level section, not the key or what is wrong."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"must be a list; as text, JSON ({exc.msg})") from exc


def parse_label_selector(value: object) -> object:
    """Reads labels to match: a mapping, JSON, or `key=value,key=value`."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg}") from exc
    selector: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, label_value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{shorten(item)} is not key=value")
        selector[key.strip()] = label_value.strip()
    return selector


def ping_deadline(count: int, spacing: float, reply_timeout: float) -> int:
    """Whole seconds for `count` echoes `spacing` apart and the last wait."""
    return math.ceil((count - 1) * spacing + reply_timeout)


class Section(BaseModel):
    """A configuration section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DockerSettings(Section):
    host: str | None = Field(
        default=None,
        pattern=r"^(unix|tcp|http|https)://\S+$",
        description="Engine address (unix://PATH or tcp://HOST:PORT); unset "
        "means DOCKER_HOST, then the local socket.",
    )
    exec_concurrency: Count = Field(default=8, ge=1, le=64)
    request_timeout: Duration = 10.0

    @field_validator("host")
    @classmethod
    def _usable_address(cls, host: str | None) -> str | None:
        if host is not None and (problem := engine_address_problem(host)):
            raise ValueError(problem)
        return host


class DiscoverySettings(Section):
    opt_in: bool = Field(
        default=False,
        description="Monitor only containers labelled netwatch.enable=true.",
    )
    include_self: bool = False
    match_labels: Annotated[
        dict[str, str], NoDecode, BeforeValidator(parse_label_selector)
    ] = Field(
        default_factory=dict,
        description="Monitor only containers carrying all these labels "
        "(for example one Compose project).",
    )
    resync_interval: Duration = 60.0
    reconnect_backoff_max: Duration = 30.0


class PingSettings(Section):
    enabled: bool = True
    count: Count = Field(default=3, ge=1, le=100)
    # iputils refuses intervals under 0.2 s to users without privileges.
    spacing: Duration = Field(default=0.2, ge=0.2)
    reply_timeout: Duration = 1.0
    # Declared after the fields its check reads.
    interval: Duration = Field(default=10.0, validate_default=True)

    @property
    def deadline(self) -> float:
        """Whole seconds one ping run may take (ping's `-w` takes integers)."""
        return float(ping_deadline(self.count, self.spacing, self.reply_timeout))

    @field_validator("interval")
    @classmethod
    def _fits_interval(cls, interval: float, info: ValidationInfo) -> float:
        count = info.data.get("count")
        spacing = info.data.get("spacing")
        reply_timeout = info.data.get("reply_timeout")
        if count is None or spacing is None or reply_timeout is None:
            return interval  # already reported as invalid
        needed = ping_deadline(count, spacing, reply_timeout) + EXEC_OVERHEAD_S
        if interval <= needed:
            raise ValueError(
                f"{interval:g}s is too short for {count} echoes {spacing:g}s "
                f"apart with a {reply_timeout:g}s reply timeout; it must "
                f"exceed {needed:g}s"
            )
        return interval


class TcpSettings(Section):
    enabled: bool = True
    connect_timeout: Duration = 2.0
    max_ports: Count = Field(default=8, ge=1, le=64)
    interval: Duration = Field(default=30.0, validate_default=True)

    @property
    def deadline(self) -> float:
        return self.connect_timeout

    @field_validator("interval")
    @classmethod
    def _fits_interval(cls, interval: float, info: ValidationInfo) -> float:
        connect_timeout = info.data.get("connect_timeout")
        if connect_timeout is None:
            return interval
        needed = connect_timeout + EXEC_OVERHEAD_S
        if interval <= needed:
            raise ValueError(
                f"{interval:g}s is too short for a {connect_timeout:g}s "
                f"connect timeout; it must exceed {needed:g}s"
            )
        return interval


class DnsSettings(Section):
    """Name lookups through the container's own resolver (the engine's
    embedded DNS at 127.0.0.11); namespace engine only."""

    enabled: bool = True
    timeout: Duration = 2.0
    max_names: Count = Field(
        default=4, ge=1, le=16, description="Names (name, aliases) per pair."
    )
    interval: Duration = Field(default=30.0, validate_default=True)

    @field_validator("interval")
    @classmethod
    def _fits_interval(cls, interval: float, info: ValidationInfo) -> float:
        timeout = info.data.get("timeout")
        if timeout is not None and interval <= timeout + EXEC_OVERHEAD_S:
            raise ValueError(
                f"{interval:g}s is too short for a {timeout:g}s lookup timeout; "
                f"it must exceed {timeout + EXEC_OVERHEAD_S:g}s"
            )
        return interval


class HttpProbeSettings(Section):
    """A GET to destinations labelled netwatch.http.port (and
    netwatch.http.path); namespace engine only."""

    enabled: bool = True
    timeout: Duration = 5.0
    interval: Duration = Field(default=30.0, validate_default=True)

    @field_validator("interval")
    @classmethod
    def _fits_interval(cls, interval: float, info: ValidationInfo) -> float:
        timeout = info.data.get("timeout")
        if timeout is not None and interval <= timeout + EXEC_OVERHEAD_S:
            raise ValueError(
                f"{interval:g}s is too short for a {timeout:g}s request timeout; "
                f"it must exceed {timeout + EXEC_OVERHEAD_S:g}s"
            )
        return interval


class BandwidthSettings(Section):
    """Throughput between a rotating sample of pairs: iperf3 where both
    containers have it, else (namespace engine) a socket-to-socket test."""

    enabled: bool = True
    method: Literal["auto", "iperf3", "socket"] = Field(
        default="auto",
        description="auto: iperf3 where both ends have it, else sockets.",
    )
    interval: Duration = Field(
        default=60.0, description="How often a batch of pairs is measured."
    )
    pairs_per_round: Count = Field(default=2, ge=1, le=100)
    concurrency: Count = Field(
        default=1, ge=1, le=16, description="Tests running at once, host-wide."
    )
    duration: Duration = Field(default=2.0, le=30.0)
    port: int = Field(default=5201, ge=1, le=65535)
    server_deadline: Duration = Field(
        default=15.0,
        validate_default=True,
        description="The one-off iperf3 server is killed by then.",
    )

    @field_validator("server_deadline")
    @classmethod
    def _outlasts_test(cls, deadline: float, info: ValidationInfo) -> float:
        duration = info.data.get("duration")
        if duration is not None and deadline < duration + 5:
            raise ValueError(
                f"{deadline:g}s leaves no room for a {duration:g}s test; "
                f"it must be at least {duration + 5:g}s"
            )
        return deadline


class ProbeSettings(Section):
    # auto: from sockets in each container's namespace where netwatch may
    # enter it (root or CAP_SYS_ADMIN, namespaces visible), else by exec.
    engine: Literal["auto", "exec", "netns"] = "auto"
    ping: PingSettings = PingSettings()
    tcp: TcpSettings = TcpSettings()
    dns: DnsSettings = DnsSettings()
    http: HttpProbeSettings = HttpProbeSettings()
    bandwidth: BandwidthSettings = BandwidthSettings()
    jitter: float = Field(
        allow_inf_nan=False,
        default=0.1,
        ge=0.0,
        le=0.5,
        description="Random shift of each run, as a fraction of its interval.",
    )
    max_parallel_jobs: Count | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="Probe processes running at once inside containers, "
        "host-wide (exec engine); default: 96 per CPU netwatch may use.",
    )

    @property
    def parallel_jobs(self) -> int:
        """`max_parallel_jobs`, or 96 per CPU (measured on a 2-core host:
        about 250 probe processes start within their deadlines, 400 do not)."""
        if self.max_parallel_jobs is not None:
            return self.max_parallel_jobs
        return 96 * max(1, len(os.sched_getaffinity(0)))

    tool_recheck_interval: Duration = Field(
        default=600.0,
        description="How long a container found without tools is left alone.",
    )


class PlannerSettings(Section):
    """How many pairs a large host probes (see netwatch.pairs.tier_plan)."""

    # Up to this many ordered pairs, every pair is probed.
    max_pairs: Count = Field(default=2000, ge=1)
    # Above it: isolation checks kept per source (pairs sharing no network).
    isolation_sample: Count = Field(default=3, ge=0)
    # The sample changes this often, so every pair is checked in time.
    rotate_every: Duration = 3600.0


class MatrixSettings(Section):
    loss_window: Count = Field(
        default=10, ge=1, le=1000, description="Ping runs kept per pair."
    )
    degraded_loss_ratio: float = Field(
        default=0.05, gt=0.0, le=1.0, allow_inf_nan=False
    )


class MetricsSettings(Section):
    latency_buckets_max_pairs: Count = Field(
        default=1000,
        ge=0,
        description="Above this many pairs, round-trip and connect-time "
        "histograms are exported without buckets (sum and count only).",
    )


class HttpSettings(Section):
    listen: str = f":{DEFAULT_PORT}"
    # The exporters' web configuration (TLS, basic auth): netwatch.webconfig.
    web_config_file: Path | None = None

    @field_validator("listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        split_listen_address(value)
        return value

    @property
    def host_and_port(self) -> tuple[str | None, int]:
        return split_listen_address(self.listen)


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


# Durations that may be zero ("fire at once").
Wait = Annotated[
    float, BeforeValidator(parse_duration), Field(ge=0, le=_DAY, allow_inf_nan=False)
]


def _plain_number(kind: str) -> Callable[[object], object]:
    """A check that lets through numbers, and numbers written as text (as
    environment variables are), but not durations or booleans."""

    def check(value: object) -> object:
        plain = isinstance(value, int | float) and not isinstance(value, bool)
        if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value):
            plain = True
        if not plain:
            raise ValueError(f"the threshold is {kind}")
        return value

    return check


def _no_threshold(value: object) -> object:
    if value is not None:
        raise ValueError("this rule takes no threshold")
    return value


class AlertRule(Section):
    """One alerting rule: on or off, how long its condition must hold, and
    its threshold where it has one (each kind of threshold is a subclass, so
    a wrong one is reported at the rule's own `threshold` key)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    enabled: bool = True
    for_: Wait = Field(default=60.0, alias="for")
    threshold: Annotated[float | None, BeforeValidator(_no_threshold)] = None
    severity: Literal["info", "warning", "critical"] = "warning"


class RatioRule(AlertRule):
    """A rule whose threshold is a share, from 0 to 1 (loss, unmeasured)."""

    threshold: Annotated[
        float,
        BeforeValidator(_plain_number("a ratio from 0 to 1")),
        Field(ge=0, le=1, allow_inf_nan=False),
    ]


class LatencyRule(AlertRule):
    """A rule whose threshold is a duration above 0 (a round trip)."""

    threshold: Duration


class IntervalsRule(AlertRule):
    """A rule whose threshold counts intervals without a round (stalled)."""

    threshold: Annotated[
        float,
        BeforeValidator(_plain_number("a count of intervals")),
        Field(gt=0, le=_DAY, allow_inf_nan=False),
    ]


# Each rule's defaults; a file or variable setting one key of a rule keeps
# the others.
RULE_DEFAULTS: dict[str, dict[str, Any]] = {
    "packet_loss_warning": {"for": 60.0, "severity": "warning", "threshold": 0.05},
    "packet_loss_critical": {"for": 30.0, "severity": "critical", "threshold": 0.5},
    "broken_path": {"for": 30.0, "severity": "critical"},
    # Two rounds: Docker itself lets a few packets cross isolated bridges
    # while it rewrites its firewall rules (when networks are created).
    "unexpected_reachability": {"for": 20.0, "severity": "critical"},
    "high_latency": {"for": 60.0, "severity": "warning", "threshold": 0.1},
    # threshold: intervals of the slowest probe without a full round
    "stalled": {"for": 0.0, "severity": "critical", "threshold": 3.0},
    "engine_unavailable": {"for": 30.0, "severity": "critical"},
    # threshold: share of the pairs that could not be measured
    "mostly_unmeasured": {"for": 120.0, "severity": "warning", "threshold": 0.5},
    # a name that resolves where it should not, or not where it should
    "name_resolution": {"for": 120.0, "severity": "warning"},
}


def _rule(name: str, kind: type[AlertRule] = AlertRule) -> Any:
    return Field(default_factory=lambda: kind.model_validate(RULE_DEFAULTS[name]))


class AlertRules(Section):
    packet_loss_warning: RatioRule = _rule("packet_loss_warning", RatioRule)
    packet_loss_critical: RatioRule = _rule("packet_loss_critical", RatioRule)
    broken_path: AlertRule = _rule("broken_path")
    unexpected_reachability: AlertRule = _rule("unexpected_reachability")
    high_latency: LatencyRule = _rule("high_latency", LatencyRule)
    stalled: IntervalsRule = _rule("stalled", IntervalsRule)
    engine_unavailable: AlertRule = _rule("engine_unavailable")
    mostly_unmeasured: RatioRule = _rule("mostly_unmeasured", RatioRule)
    name_resolution: AlertRule = _rule("name_resolution")

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        filled = dict(data)
        for name, defaults in RULE_DEFAULTS.items():
            given = filled.get(name)
            if isinstance(given, dict):
                filled[name] = {**defaults, **given}
            elif isinstance(given, AlertRule):
                filled[name] = {
                    **defaults,
                    **given.model_dump(by_alias=True, exclude_unset=True),
                }
        return filled


class WebhookSettings(Section):
    url: Annotated[str, Field(pattern=r"^https?://\S+$")] = Field(
        examples=["http://127.0.0.1:9093"]
    )
    timeout: Duration = 5.0
    retries: Count = Field(default=3, ge=0, le=10)


class AlertmanagerSettings(Section):
    url: Annotated[str, Field(pattern=r"^https?://\S+$")] = Field(
        examples=["http://127.0.0.1:9093"]
    )
    timeout: Duration = 5.0
    # Firing alerts are sent again this often; Alertmanager forgets alerts
    # that are not, after their endsAt (4 intervals ahead).
    resend_interval: Duration = 60.0


class AlertSettings(Section):
    enabled: bool = True
    evaluation_interval: Duration = 5.0
    rules: AlertRules = Field(default_factory=AlertRules)
    # A firing alert resolves only once its condition stayed false this long.
    resolve_after: Wait = 30.0
    # Pairs of a container that just started, stopped, restarted, paused or
    # unpaused raise no alert for this long.
    grace_period: Wait = 60.0
    max_notifications_per_minute: Count = Field(default=60, ge=1)
    # Where alerts link to (generatorURL); default http://HOSTNAME:PORT.
    external_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    webhooks: Annotated[
        tuple[WebhookSettings, ...], NoDecode, BeforeValidator(parse_json_list)
    ] = ()
    alertmanagers: Annotated[
        tuple[AlertmanagerSettings, ...], NoDecode, BeforeValidator(parse_json_list)
    ] = ()


class Config(BaseSettings):
    """Everything netwatch can be told. Build it with `load_config`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTING,
        extra="forbid",
        frozen=True,
    )

    docker: DockerSettings = DockerSettings()
    discovery: DiscoverySettings = DiscoverySettings()
    probes: ProbeSettings = ProbeSettings()
    matrix: MatrixSettings = MatrixSettings()
    planner: PlannerSettings = PlannerSettings()
    http: HttpSettings = HttpSettings()
    metrics: MetricsSettings = MetricsSettings()
    log: LogSettings = LogSettings()
    alerts: AlertSettings = AlertSettings()
    # An expectation policy file (see netwatch.policy); none: the topology.
    policy: Path | None = None


def split_listen_address(value: str) -> tuple[str | None, int]:
    """Splits `host:port`, `[v6]:port` or `:port`; an empty host means all."""
    host, sep, port_text = value.rpartition(":")
    # Port 0 asks the system for any free port.
    port = 0 if port_text == "0" else port_number(port_text)
    if not sep or port is None:
        raise ValueError(
            f"{shorten(value)} is not host:port with a port from 0 to 65535 "
            f"(for example :{DEFAULT_PORT})"
        )
    host = host.removeprefix("[").removesuffix("]")
    return (host or None), port


class _FileSource(PydanticBaseSettingsSource):
    """Hands pydantic-settings the values already read from the YAML file."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]):
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(
        self, field: FieldInfo, field_name: str
    ) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._values


def _shape_problems(
    model: type[BaseModel],
    values: Mapping[Any, Any],
    path: KeyPath,
    where: Callable[[KeyPath], str],
) -> list[str]:
    """Keys that are not words, and sections that are not mappings, with their
    lines: checked on the file alone, before layers are merged, so that a flag
    cannot hide a broken section."""
    problems = []
    fields = {(f.alias or name): f for name, f in model.model_fields.items()}
    for key, value in values.items():
        location = (*path, str(key))
        dotted = ".".join(map(str, location))
        if not isinstance(key, str):
            problems.append(
                f"{where(location)}: {dotted}: keys must be words, not {key!r}"
            )
            continue
        field = fields.get(key)
        section = field.annotation if field is not None else None
        if isinstance(section, type) and issubclass(section, BaseModel):
            if isinstance(value, dict):
                problems += _shape_problems(section, value, location, where)
            else:
                problems.append(
                    f"{where(location)}: {dotted}: must be a mapping of settings"
                )
    return problems


def read_config_file(path: Path) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    """Reads the YAML file and the line of every key; empty means no settings."""
    values, lines = read_yaml(path)
    if values is None:
        return {}, lines
    if not isinstance(values, dict):
        raise ConfigError(
            [
                f"{path}:1: the top level must be a mapping of sections, "
                f"not {type(values).__name__}"
            ]
        )

    def where(location: KeyPath) -> str:
        line = line_of(lines, location)
        return f"{path}:{line}" if line else str(path)

    problems = _shape_problems(Config, values, (), where)
    if problems:
        raise ConfigError(problems)
    return values, lines


def _known_env_names(model: type[BaseModel], prefix: str) -> set[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        env_name = f"{prefix}{field.alias or name}".upper()
        names.add(env_name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= _known_env_names(annotation, env_name + ENV_NESTING)
    return names


def check_environment(environ: Mapping[str, str]) -> None:
    """Rejects `NETWATCH_*` variables that name no setting (typos)."""
    known = _known_env_names(Config, ENV_PREFIX)
    unknown = sorted(
        name
        for name in environ
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known
    )
    if unknown:
        raise ConfigError(
            [
                f"{name}: no such setting (nested keys are joined by "
                f"{ENV_NESTING!r}, e.g. NETWATCH_PROBES__PING__INTERVAL)"
                for name in unknown
            ]
        )


def _describe(
    error: Mapping[str, Any], lines: Mapping[KeyPath, int], path: Path | None
) -> str:
    """One problem: the key, where the file sets it (if it does), and what."""
    location: KeyPath = tuple(error["loc"])
    key = ".".join(str(part) for part in location) or "(top level)"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif not isinstance(error.get("input"), dict | list | type(None)):
        message = f"{message} (got {shorten(str(error['input']))})"
    line = lines.get(
        tuple(str(part) if not isinstance(part, int) else part for part in location)
    )
    return f"{key}: {message}" + (f" ({path}:{line})" if line and path else "")


def load_config(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    defaults: Mapping[str, Any] | None = None,
) -> Config:
    """Combines defaults, the file, the environment and `overrides` (flags).

    `overrides` is nested like the file (`{"http": {"listen": ":9999"}}`);
    `defaults`, nested the same way, replace built-in defaults for one command.
    Raises ConfigError naming every faulty key, with its line when the file
    sets it.
    """
    check_environment(os.environ)
    file_values, lines = read_config_file(path) if path is not None else ({}, {})

    class _Layered(Config):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (
                init_settings,
                env_settings,
                _FileSource(settings_cls, file_values),
                _FileSource(settings_cls, dict(defaults or {})),
            )

    try:
        layered = _Layered(**dict(overrides or {}))
        # Validated again as a plain Config: checks on defaults run here too.
        return Config.model_validate(layered.model_dump(by_alias=True))
    except ValidationError as exc:
        raise ConfigError([_describe(e, lines, path) for e in exc.errors()]) from exc
    except SettingsError as exc:
        # pydantic-settings could not decode a NETWATCH_* variable.
        raise ConfigError([f"environment: {exc}"]) from exc
