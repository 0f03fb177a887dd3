#!/usr/bin/env bash
# Runs netwatch's tests: unit tests, then integration tests against the local
# Docker engine with images built from this machine's binaries.
#
#   bash tests/run.sh [pytest arguments]
#
# Needs Python 3.11+, and for the integration tests a running Docker engine,
# gcc with static glibc, and the Debian packages dash, iputils-ping,
# netcat-openbsd, ncat, iperf3, busybox-static, iptables (.ci/run installs
# them). Without an engine the integration tests skip, unless
# NETWATCH_REQUIRE_DOCKER=1 (as in CI), which makes that a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[test]'

if docker info >/dev/null 2>&1; then
    bash tests/images/build.sh
fi

.venv/bin/ruff check netwatch tests benchmarks grafana
.venv/bin/mypy
exec .venv/bin/pytest "$@"
