"""A throwaway certificate authority for the TLS tests, made with `openssl`.

Keys are ECDSA P-256 (fast to make); certificates last two days. Every file
lands in one folder the caller owns and removes.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Pair:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Pair
    # For 127.0.0.1 and localhost, signed by `ca`.
    server: Pair
    # A client certificate (SAN DNS:scraper), signed by `ca`.
    client: Pair
    # A client certificate no one trusts: self-signed.
    stranger: Pair
    # A second authority, and a server certificate it signed (a rotation).
    other_ca: Pair
    other_server: Pair


def _openssl(*argv: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        pytest.fail("openssl is not installed (Debian: openssl); the TLS tests need it")
    subprocess.run(
        [binary, *argv], cwd=cwd, check=True, capture_output=True, timeout=30
    )


def _key_and_request(folder: Path, name: str, subject: str) -> None:
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
        "-subj", subject,
        cwd=folder,
    )  # fmt: skip


def _authority(folder: Path, name: str) -> Pair:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt",
        "-days", "2", "-subj", f"/CN=netwatch test {name}",
        cwd=folder,
    )  # fmt: skip
    return Pair(folder / f"{name}.crt", folder / f"{name}.key")


def _signed(folder: Path, name: str, by: Pair, extensions: str, serial: int) -> Pair:
    _key_and_request(folder, name, f"/CN=netwatch test {name}")
    (folder / f"{name}.ext").write_text(extensions)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", str(by.cert),
        "-CAkey", str(by.key), "-set_serial", str(serial), "-days", "2",
        "-out", f"{name}.crt", "-extfile", f"{name}.ext",
        cwd=folder,
    )  # fmt: skip
    return Pair(folder / f"{name}.crt", folder / f"{name}.key")


def make_pki(folder: Path) -> Pki:
    """Makes the authority and the certificates in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    server_san = "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    ca = _authority(folder, "ca")
    other_ca = _authority(folder, "other-ca")
    return Pki(
        ca=ca,
        server=_signed(folder, "server", ca, server_san, 1),
        client=_signed(
            folder,
            "client",
            ca,
            "subjectAltName=DNS:scraper\nextendedKeyUsage=clientAuth\n",
            2,
        ),
        stranger=_authority(folder, "stranger"),
        other_ca=other_ca,
        other_server=_signed(folder, "other-server", other_ca, server_san, 3),
    )
