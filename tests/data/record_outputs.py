"""Records real tool output from the test images into recorded-output.json.

Run by hand when a recording needs refreshing (the unit tests only read the
JSON): it starts throwaway containers from the images tests/images/build.sh
makes, runs each tool the way netwatch does, and stores argv, exit code,
stdout and stderr exactly as the engine returned them.

    python tests/data/record_outputs.py
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

OUT = Path(__file__).with_name("recorded-output.json")
NET = "nw-record"


def sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def ip_of(name: str) -> str:
    template = f'{{{{(index .NetworkSettings.Networks "{NET}").IPAddress}}}}'
    return sh("docker", "inspect", "-f", template, name).stdout.strip()


def main() -> None:
    sh("docker", "network", "create", NET)
    runs = {
        "nw-rec-tools": ("netwatch-test/tools", ["nc", "-lk", "8080"]),
        "nw-rec-busybox": ("netwatch-test/busybox", ["sleep", "3600"]),
        "nw-rec-ncat": ("netwatch-test/ncat", ["sleep", "3600"]),
        "nw-rec-drop": ("netwatch-test/tools", ["sleep", "3600"]),
    }
    for name, (image, cmd) in runs.items():
        sh("docker", "run", "-d", "--name", name, "--network", NET, image, *cmd)
    sh(
        "docker",
        "run",
        "-d",
        "--name",
        "nw-rec-none",
        "--network",
        "none",
        "netwatch-test/tools",
        "sleep",
        "3600",
    )
    time.sleep(1)
    # nw-rec-drop silently drops every echo request: "no reply".
    pid = sh("docker", "inspect", "-f", "{{.State.Pid}}", "nw-rec-drop").stdout.strip()
    sh(
        "nsenter",
        "-t",
        pid,
        "-n",
        "iptables",
        "-A",
        "INPUT",
        "-p",
        "icmp",
        "-j",
        "DROP",
    )
    dropper = ip_of("nw-rec-drop")
    up = ip_of("nw-rec-tools")
    # An address on the test network that nobody holds.
    nobody = up.rsplit(".", 1)[0] + ".250"

    cases = {
        "iputils-ok": (
            "nw-rec-tools",
            ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", "-w", "2", up],
        ),
        "iputils-no-reply": (
            "nw-rec-tools",
            ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", "-w", "2", dropper],
        ),
        "iputils-host-unreachable": (
            "nw-rec-tools",
            ["ping", "-n", "-c", "5", "-i", "0.2", "-W", "1", "-w", "4", nobody],
        ),
        "iputils-network-unreachable": (
            "nw-rec-none",
            ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", "-w", "2", up],
        ),
        "iputils-version": ("nw-rec-tools", ["ping", "-V"]),
        "busybox-ping-ok": (
            "nw-rec-busybox",
            ["ping", "-c", "3", "-i", "0.2", "-W", "1", "-w", "2", up],
        ),
        "busybox-ping-no-reply": (
            "nw-rec-busybox",
            ["ping", "-c", "3", "-i", "0.2", "-W", "1", "-w", "2", dropper],
        ),
        "busybox-ping-version": ("nw-rec-busybox", ["ping", "-V"]),
        "openbsd-nc-open": (
            "nw-rec-tools",
            ["nc", "-n", "-v", "-z", "-w", "1", up, "8080"],
        ),
        "openbsd-nc-refused": (
            "nw-rec-tools",
            ["nc", "-n", "-v", "-z", "-w", "1", up, "8081"],
        ),
        "openbsd-nc-timeout": (
            "nw-rec-tools",
            ["nc", "-n", "-v", "-z", "-w", "1", nobody, "8081"],
        ),
        "openbsd-nc-no-route": (
            "nw-rec-none",
            ["nc", "-n", "-v", "-z", "-w", "1", up, "8080"],
        ),
        "openbsd-nc-help": ("nw-rec-tools", ["nc", "-h"]),
        "busybox-nc-open": (
            "nw-rec-busybox",
            ["nc", "-w", "1", up, "8080", "-e", "sh", "-c", ":"],
        ),
        "busybox-nc-refused": (
            "nw-rec-busybox",
            ["nc", "-w", "1", up, "8081", "-e", "sh", "-c", ":"],
        ),
        "busybox-nc-timeout": (
            "nw-rec-busybox",
            ["nc", "-w", "1", nobody, "8081", "-e", "sh", "-c", ":"],
        ),
        "busybox-nc-z": ("nw-rec-busybox", ["nc", "-z", "-w", "1", up, "8080"]),
        "busybox-nc-help": ("nw-rec-busybox", ["nc", "-h"]),
        "ncat-open": ("nw-rec-ncat", ["nc", "-n", "-v", "-z", "-w", "1", up, "8080"]),
        "ncat-refused": (
            "nw-rec-ncat",
            ["nc", "-n", "-v", "-z", "-w", "1", up, "8081"],
        ),
        "ncat-timeout": (
            "nw-rec-ncat",
            ["nc", "-n", "-v", "-z", "-w", "1", nobody, "8081"],
        ),
        "ncat-help": ("nw-rec-ncat", ["nc", "-h"]),
    }
    recorded = {}
    try:
        for key, (container, argv) in cases.items():
            done = sh("docker", "exec", container, *argv)
            recorded[key] = {
                "container": container,
                "argv": argv,
                "exit_code": done.returncode,
                "stdout": done.stdout,
                "stderr": done.stderr,
            }
        OUT.write_text(json.dumps(recorded, indent=1) + "\n")
    finally:
        sh("docker", "rm", "-f", *runs, "nw-rec-none")
        sh("docker", "network", "rm", NET)


if __name__ == "__main__":
    main()
