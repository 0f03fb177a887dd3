"""The `netwatch` command: `run` (the daemon) and `matrix` (one round).

Exit codes of `netwatch matrix`: 0 every pair as expected, 1 a pair
contradicts the expectation (or, with --fail-on-unmeasured, could not be
measured), 2 usage or configuration error, 3 the Docker engine could not be
used. `netwatch run` exits 0 when stopped, 2 on a configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import structlog

from netwatch import __version__
from netwatch.config import Config, load_config
from netwatch.errors import ConfigError, DockerError, ListenError, PolicyError
from netwatch.logs import configure_logging
from netwatch.policy import Policy, load_policy
from netwatch.reload import ConfigSource

EXIT_OK = 0
EXIT_CONTRADICTION = 1
EXIT_USAGE = 2
EXIT_ENGINE = 3

log = structlog.get_logger("netwatch.cli")


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", type=Path, metavar="FILE", help="YAML configuration file"
    )
    parser.add_argument(
        "--docker-host",
        metavar="URL",
        help="engine address (default: DOCKER_HOST, else the local socket)",
    )
    parser.add_argument(
        "--opt-in",
        action="store_true",
        default=None,
        help="monitor only containers labelled netwatch.enable=true",
    )
    parser.add_argument(
        "--include-self",
        action="store_true",
        default=None,
        help="probe from and to netwatch's own container too",
    )
    parser.add_argument(
        "--policy",
        type=Path,
        metavar="FILE",
        help="expectation policy (YAML) that overrides the topology",
    )
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="log level"
    )
    parser.add_argument(
        "--log-format", choices=["auto", "json", "console"], help="log format"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netwatch",
        description="Proves, continuously, which Docker containers can reach which.",
        epilog="Settings: defaults < --config FILE < NETWATCH_* variables < flags.",
    )
    parser.add_argument(
        "--version", action="version", version=f"netwatch {__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="run the daemon: probe every pair, serve /metrics and the matrix",
        description="Monitor every running container of the engine, probe every "
        "ordered pair, and serve the matrix page (/), /metrics, /api/v1/matrix, "
        "/api/v1/alerts, /-/healthy and /-/ready.",
    )
    _common_options(run)
    run.add_argument(
        "--listen",
        metavar="[HOST]:PORT",
        help="HTTP address (default :10980, all interfaces)",
    )
    run.add_argument(
        "--web.config.file",
        dest="web_config_file",
        type=Path,
        metavar="FILE",
        help="the exporters' web configuration: TLS, basic auth (http.web_config_file)",
    )

    matrix = commands.add_parser(
        "matrix",
        help="probe every pair once and print the matrix",
        description="Run one full round and print the matrix: rows are sources, "
        "columns destinations. Exit 0 when every pair is as expected, 1 when any "
        "contradicts the expectation, 2 on usage or config errors, 3 when the "
        "engine cannot be used.",
    )
    _common_options(matrix)
    matrix.add_argument("--json", action="store_true", help="print JSON instead")
    matrix.add_argument(
        "--fail-on-unmeasured",
        action="store_true",
        help="exit 1 also when a pair could not be measured",
    )
    matrix.add_argument(
        "--color",
        choices=["auto", "always", "never"],
        default="auto",
        help="colour the table (default: when stdout is a terminal)",
    )
    bandwidth = commands.add_parser(
        "bandwidth",
        help="measure the bandwidth from one container to another, once",
        description="Run one bandwidth test from SRC to DST as the daemon does "
        "(iperf3 where both have it, else sockets in their namespaces) and print "
        "the result. Exit 0 when measured, 1 when the network refused the test "
        "or it could not be measured, 2 on usage or config errors, 3 when the "
        "engine cannot be used.",
    )
    _common_options(bandwidth)
    bandwidth.add_argument("src", help="source container (name or id)")
    bandwidth.add_argument("dst", help="destination container (name or id)")
    bandwidth.add_argument("--json", action="store_true", help="print JSON instead")
    bandwidth.add_argument(
        "--method",
        choices=["auto", "iperf3", "socket"],
        help="how to measure (default: probes.bandwidth.method)",
    )
    health = commands.add_parser(
        "health",
        help="ask a running daemon whether it is healthy (for HEALTHCHECK)",
        description="GET /-/healthy (or /-/ready with --ready) from the daemon at "
        "the configured http.listen address, on loopback when it listens on all "
        "interfaces. Exit 0 when it answers 200, else 1.",
    )
    health.add_argument(
        "-c", "--config", type=Path, metavar="FILE", help="YAML configuration file"
    )
    health.add_argument(
        "--listen", metavar="[HOST]:PORT", help="the daemon's HTTP address"
    )
    health.add_argument("--ready", action="store_true", help="ask /-/ready instead")
    health.add_argument(
        "--web.config.file",
        dest="web_config_file",
        type=Path,
        metavar="FILE",
        help="the daemon's web configuration (https when it has TLS)",
    )
    health.add_argument(
        "--client-cert",
        dest="client_cert",
        type=Path,
        metavar="FILE",
        help="client certificate to present (when the daemon requires one)",
    )
    health.add_argument(
        "--client-key",
        dest="client_key",
        type=Path,
        metavar="FILE",
        help="the client certificate's key (default: in --client-cert)",
    )

    policy_description = (
        "Print the effective expectation of every pair of monitored "
        "containers: reachable or isolated, why (a policy rule and its line, or "
        "the topology), and the ports that must be open or closed. Probes "
        "nothing. Exit 2 when the policy is invalid, 3 when the engine cannot "
        "be used."
    )
    policy = commands.add_parser(
        "policy",
        help="show what is expected of every pair, with the policy applied",
        description=policy_description,
    )
    policy_commands = policy.add_subparsers(
        dest="policy_command", metavar="ACTION", required=True
    )
    show = policy_commands.add_parser(
        "show",
        help="print the effective expectation",
        description=policy_description,
    )
    _common_options(show)
    show.add_argument("--json", action="store_true", help="print JSON instead")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Flags that were given, nested like the configuration file."""
    given: dict[tuple[str, ...], Any] = {
        ("docker", "host"): getattr(args, "docker_host", None),
        ("discovery", "opt_in"): getattr(args, "opt_in", None),
        ("discovery", "include_self"): getattr(args, "include_self", None),
        ("log", "level"): getattr(args, "log_level", None),
        ("log", "format"): getattr(args, "log_format", None),
        ("http", "listen"): getattr(args, "listen", None),
        ("http", "web_config_file"): getattr(args, "web_config_file", None),
        ("policy",): getattr(args, "policy", None),
    }
    if getattr(args, "method", None) is not None:
        given[("probes", "bandwidth", "method")] = args.method
    overrides: dict[str, Any] = {}
    for path, value in given.items():
        if value is None:
            continue
        *parents, key = path
        section = overrides
        for parent in parents:
            section = section.setdefault(parent, {})
        section[key] = value
    return overrides


def _run_async(coroutine: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


# The daemon allocates and frees results by the thousand every second. At
# CPython's default thresholds (700, 10, 10) that set off a full collection
# every two or three seconds on a 60-container host, each about 100 ms long
# and finding nothing, which held /metrics up to 355 ms. Only the last
# threshold is raised: young cycles are still collected as promptly (a
# larger first threshold let churned containers' garbage wait, +37% memory
# in the churn test), and full collections come ten times less often: 10 in
# three minutes, slowest scrape 105-205 ms (benchmarks/round_vs_naive.py
# --soak).
_GC_THRESHOLDS = (700, 10, 100)


async def _run_daemon(
    config: Config, policy: Policy | None, reload_from: ConfigSource
) -> int:
    from netwatch.daemon import Daemon

    gc.set_threshold(*_GC_THRESHOLDS)
    try:
        await Daemon(config, policy, reload_from=reload_from).run()
    except ListenError as exc:
        print(f"netwatch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        return _report_config_error(exc, "configuration")
    except DockerError as exc:
        print(f"netwatch: cannot use the Docker engine: {exc}", file=sys.stderr)
        return EXIT_ENGINE
    return EXIT_OK


async def _run_matrix(
    config: Config, policy: Policy | None, args: argparse.Namespace
) -> int:
    from netwatch.matrix import Verdict
    from netwatch.oneshot import one_round
    from netwatch.report import render_table, snapshot_to_dict

    try:
        snapshot, engine, why = await one_round(config, policy)
    except ConfigError as exc:
        return _report_config_error(exc, "configuration")
    except DockerError as exc:
        print(f"netwatch: cannot use the Docker engine: {exc}", file=sys.stderr)
        return EXIT_ENGINE

    source = policy.source if policy is not None else None
    if args.json:
        body = snapshot_to_dict(snapshot, policy=source)
        body["engine"] = {"name": engine, "reason": why}
        print(json.dumps(body, indent=2, ensure_ascii=False))
    else:
        color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
        print(render_table(snapshot, color=color, policy=source), end="")
        print(f"Probed by the {engine} engine: {why}.")

    counts = snapshot.verdict_counts()
    if counts[Verdict.BROKEN] or counts[Verdict.UNEXPECTED]:
        return EXIT_CONTRADICTION
    # A name that resolves where it should not, or not where it should; a
    # labelled HTTP check that answers an error.
    if any(p.dns_findings or p.http_findings for p in snapshot.pairs.values()):
        return EXIT_CONTRADICTION
    if args.fail_on_unmeasured and counts[Verdict.UNMEASURED]:
        return EXIT_CONTRADICTION
    return EXIT_OK


async def _run_bandwidth(config: Config, args: argparse.Namespace) -> int:
    from netwatch.oneshot import one_bandwidth_test
    from netwatch.probes.outcome import Outcome

    try:
        result = await one_bandwidth_test(config, args.src, args.dst)
    except LookupError as exc:
        print(f"netwatch: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    except DockerError as exc:
        print(f"netwatch: cannot use the Docker engine: {exc}", file=sys.stderr)
        return EXIT_ENGINE
    if args.json:
        body = {
            "src": args.src,
            "dst": args.dst,
            "method": result.method,
            "outcome": result.outcome.value,
            "reason": result.reason,
            "detail": result.detail,
            "bits_per_second": result.bits_per_second,
            "retransmits": result.retransmits,
        }
        print(json.dumps(body, indent=2, ensure_ascii=False))
    else:
        what = (
            "could not measure"
            if result.outcome is Outcome.UNMEASURED
            else result.outcome.value
        )
        print(
            f"{args.src} -> {args.dst}  {result.method}  {what}: {result.detail}"
            + (f" ({result.reason})" if result.reason else "")
        )
    return EXIT_OK if result.outcome is Outcome.OK else EXIT_CONTRADICTION


async def _show_policy(
    config: Config, policy: Policy | None, args: argparse.Namespace
) -> int:
    from netwatch.oneshot import expectations
    from netwatch.report import expectations_to_dict, render_expectations

    try:
        plan, containers = await expectations(config, policy)
    except DockerError as exc:
        print(f"netwatch: cannot use the Docker engine: {exc}", file=sys.stderr)
        return EXIT_ENGINE

    if args.json:
        body = expectations_to_dict(plan, containers, policy)
        print(json.dumps(body, indent=2, ensure_ascii=False))
    else:
        print(render_expectations(plan, containers, policy), end="")
    return EXIT_OK


def _check_health(
    config: Config,
    ready: bool,
    client_cert: Path | None = None,
    client_key: Path | None = None,
) -> int:
    from netwatch.webconfig import read_web_config, self_check_context

    web_file = config.http.web_config_file
    try:
        web = read_web_config(web_file) if web_file is not None else None
    except ConfigError as exc:
        return _report_config_error(exc, "web configuration")
    host, port = config.http.host_and_port
    if host in (None, "0.0.0.0", "::"):
        host = "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if web is not None and web.tls is not None else "http"
    url = f"{scheme}://{shown}:{port}/-/{'ready' if ready else 'healthy'}"
    try:
        # Over TLS, the daemon's certificate is not verified: see
        # self_check_context.
        context = self_check_context(web, client_cert, client_key)
        with urllib.request.urlopen(url, timeout=3, context=context) as response:
            healthy = response.status == 200
    except urllib.error.HTTPError as exc:
        exc.close()
        # With basic auth on, the check has no password to send (the daemon
        # keeps only hashes). A 401 still comes from the running server,
        # which is all /-/healthy proves; readiness it cannot prove.
        if exc.code == 401 and not ready:
            return EXIT_OK
        print(f"netwatch: {url}: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"netwatch: {url}: {exc}", file=sys.stderr)
        return 1
    return EXIT_OK if healthy else 1


def _report_config_error(exc: ConfigError, what: str) -> int:
    print(f"netwatch: invalid {what}:", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    overrides = _overrides(args)
    # A one-shot keeps the terminal for its output unless told otherwise:
    # warning is its default, below the file, environment and flags.
    defaults = {"log": {"level": "warning"}} if args.command != "run" else None

    def read_settings() -> tuple[Config, Policy | None]:
        """The configuration and the policy, read as at startup (the daemon
        reads them again on SIGHUP and POST /-/reload)."""
        config = load_config(args.config, overrides, defaults=defaults)
        try:
            policy = load_policy(config.policy) if config.policy is not None else None
        except ConfigError as exc:
            raise PolicyError(exc.problems) from exc
        return config, policy

    try:
        config, policy = read_settings()
    except PolicyError as exc:
        return _report_config_error(exc, "policy")
    except ConfigError as exc:
        return _report_config_error(exc, "configuration")

    configure_logging(config.log)
    if args.command == "health":
        return _check_health(config, args.ready, args.client_cert, args.client_key)
    if args.command == "run":
        return _run_async(_run_daemon(config, policy, read_settings))
    if args.command == "matrix":
        return _run_async(_run_matrix(config, policy, args))
    if args.command == "bandwidth":
        return _run_async(_run_bandwidth(config, args))
    return _run_async(_show_policy(config, policy, args))


if __name__ == "__main__":
    sys.exit(main())
