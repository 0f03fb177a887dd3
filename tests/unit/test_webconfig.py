"""The exporters' web configuration file: every key of the format, the
problems named with their lines, basic auth with bcrypt and its cache, and
the guard enforcing a file (and a newer one) over real TLS on loopback."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import bcrypt
import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from netwatch.config import MatrixSettings
from netwatch.errors import ConfigError
from netwatch.matrix import ReachabilityMatrix
from netwatch.web import WebSources, bound_port, build_app, start_server
from netwatch.webconfig import (
    BasicAuth,
    TokenBucket,
    WebGuard,
    load_web_config,
    read_web_config,
    san_allowed,
    self_check_context,
)
from tests.pki import Pair, Pki, make_pki
from tests.unit.test_web import ROUTES

# Cost 4, the lowest: the tests check logic, not bcrypt's slowness.
PASSWORD = "s3cret"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def write(folder: Path, text: str, name: str = "web.yml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    return caught.value.problems


def basic(user: str | bytes, password: str | bytes) -> str:
    def raw(text: str | bytes) -> bytes:
        return text.encode() if isinstance(text, str) else text

    token = base64.b64encode(raw(user) + b":" + raw(password)).decode()
    return f"Basic {token}"


def test_every_key_of_the_format_is_read(tmp_path):
    """Each key the toolkit documents (and netwatch honours) is read with its
    value; relative paths join the file's folder."""
    path = write(
        tmp_path,
        "tls_server_config:\n"
        "  cert_file: certs/server.crt\n"
        "  key_file: /etc/keys/server.key\n"
        "  client_ca_file: ca.crt\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        "  client_allowed_sans: [scraper, 10.0.0.1]\n"
        "  min_version: TLS13\n"
        "  max_version: TLS13\n"
        "  cipher_suites: []\n"
        "  curve_preferences: []\n"
        "  prefer_server_cipher_suites: false\n"
        "http_server_config:\n"
        "  http2: false\n"
        "  headers:\n"
        "    X-Frame-Options: deny\n"
        "    X-Content-Type-Options: nosniff\n"
        "    Strict-Transport-Security: max-age=31536000\n"
        "    X-XSS-Protection: '1; mode=block'\n"
        "    Content-Security-Policy: default-src 'self'\n"
        "basic_auth_users:\n"
        f"  alice: '{HASH}'\n"
        "rate_limit:\n"
        "  interval: 100ms\n"
        "  burst: 10\n",
    )

    config = read_web_config(path)

    tls = config.tls
    assert tls is not None
    assert tls.cert_file == tmp_path / "certs/server.crt"
    assert tls.key_file == Path("/etc/keys/server.key")
    assert tls.client_ca_file == tmp_path / "ca.crt"
    assert tls.client_auth_type == "RequireAndVerifyClientCert"
    assert tls.client_allowed_sans == ("scraper", "10.0.0.1")
    assert (tls.min_version, tls.max_version) == ("TLS13", "TLS13")
    assert tls.prefer_server_cipher_suites is False
    assert config.http_server_config.http2 is False
    assert config.http_server_config.headers["X-Frame-Options"] == "deny"
    assert len(config.http_server_config.headers) == 5
    assert config.basic_auth_users == {"alice": HASH}
    assert (config.rate_limit.interval, config.rate_limit.burst) == (0.1, 10)


@pytest.mark.parametrize(
    "text",
    ["", "tls_server_config: {}\nbasic_auth_users:\n", "http_server_config:\n"],
    ids=["empty-file", "empty-sections", "null-section"],
)
def test_an_empty_file_turns_nothing_on(tmp_path, text):
    """An empty file, or empty sections, mean plain HTTP and no users."""
    path = write(tmp_path, text)

    loaded = load_web_config(path)

    assert loaded.context is None
    assert loaded.config.tls is None
    assert loaded.config.basic_auth_users == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("basic_auth_user: {}\n", ":1: basic_auth_user: unknown key"),
        (
            "tls_server_config:\n  cert_file: a\n  key_fil: b\n",
            ":3: tls_server_config.key_fil: unknown key",
        ),
        (
            "http_server_config:\n  headers: {}\n  http3: true\n",
            ":3: http_server_config.http3: unknown key",
        ),
        (
            "rate_limit:\n  burst: 1\n  intervall: 1s\n",
            ":3: rate_limit.intervall: unknown key",
        ),
    ],
    ids=["top-level", "tls", "http", "rate-limit"],
)
def test_unknown_keys_are_errors_naming_key_and_line(tmp_path, text, expected):
    """A typo is never ignored: the problem names the key and its line."""
    path = write(tmp_path, text)

    problems = problems_of(path)

    assert problems == [f"{path}{expected}"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: 12\n",
            ":4: tls_server_config.min_version: Input should be 'TLS10', 'TLS11', "
            "'TLS12' or 'TLS13' (got '12')",
        ),
        (
            "tls_server_config:\n  client_auth_type: Always\n",
            ":2: tls_server_config.client_auth_type: Input should be 'NoClientCert'",
        ),
        (
            "tls_server_config:\n  client_allowed_sans: scraper\n",
            ":2: tls_server_config.client_allowed_sans: Input should be a valid tuple",
        ),
        ("basic_auth_users: [alice]\n", ":1: basic_auth_users: Input should be"),
        ("basic_auth_users:\n  alice: 12\n", ":2: basic_auth_users.alice: Input"),
        (
            "http_server_config:\n  http2: maybe\n",
            ":2: http_server_config.http2: Input should be a valid boolean",
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: [deny]\n",
            ":3: http_server_config.headers.X-Frame-Options: Input should be a "
            "valid string",
        ),
        ("rate_limit:\n  interval: soon\n", ":2: rate_limit.interval: 'soon' is not"),
        ("rate_limit:\n  burst: true\n", ":2: rate_limit.burst: True is not a whole"),
        ("rate_limit:\n  burst: -1\n", ":2: rate_limit.burst: Input should be"),
        ("- tls_server_config\n", ":1: the top level must be a mapping, not list"),
        ("tls_server_config: [\n", ":2: not valid YAML"),
        ("rate_limit: {}\nrate_limit: {}\n", ":2: duplicate key 'rate_limit'"),
    ],
    ids=[
        "version-number",
        "auth-type",
        "sans-not-list",
        "users-list",
        "hash-number",
        "http2-text",
        "header-list",
        "interval-text",
        "burst-bool",
        "burst-negative",
        "top-level-list",
        "bad-yaml",
        "duplicate",
    ],
)
def test_wrong_types_are_named_with_their_line(tmp_path, text, expected):
    """A value of the wrong type or range names its key, line and what fits."""
    path = write(tmp_path, text)

    problems = problems_of(path)

    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}{expected}"), problems


@pytest.mark.parametrize(
    ("tls", "expected"),
    [
        ("  key_file: k\n", ":1: tls_server_config: TLS needs one of cert or"),
        ("  cert_file: c\n", ":1: tls_server_config: TLS needs one of key or"),
        ("  cert_file: ''\n  key_file: k\n", ":1: tls_server_config: TLS needs one"),
        (
            "  cert_file: c\n  cert: x\n  key_file: k\n",
            ":3: tls_server_config.cert: give cert or cert_file, not both",
        ),
        (
            "  cert_file: c\n  key_file: k\n  client_ca_file: ca\n",
            ":4: tls_server_config.client_ca_file: a client CA without a "
            "client_auth_type that verifies",
        ),
        (
            "  cert_file: c\n  key_file: k\n"
            "  client_auth_type: VerifyClientCertIfGiven\n",
            ":4: tls_server_config.client_auth_type: VerifyClientCertIfGiven needs "
            "client_ca_file",
        ),
        (
            "  cert_file: c\n  key_file: k\n  client_auth_type: RequireAnyClientCert\n",
            ":4: tls_server_config.client_auth_type: RequireAnyClientCert is not "
            "supported: Python's ssl module verifies",
        ),
        (
            "  cert_file: c\n  key_file: k\n  client_auth_type: RequestClientCert\n",
            ":4: tls_server_config.client_auth_type: RequestClientCert is not",
        ),
        (
            "  cert_file: c\n  key_file: k\n"
            "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n",
            ":4: tls_server_config.cipher_suites: netwatch cannot honour this",
        ),
        (
            "  cert_file: c\n  key_file: k\n  curve_preferences: [X25519]\n",
            ":4: tls_server_config.curve_preferences: netwatch cannot honour this",
        ),
        (
            "  cert_file: c\n  key_file: k\n  client_allowed_sans: [a]\n",
            ":4: tls_server_config.client_allowed_sans: needs client_auth_type "
            "RequireAndVerifyClientCert",
        ),
        (
            "  cert_file: c\n  key_file: k\n"
            "  min_version: TLS13\n  max_version: TLS12\n",
            ":4: tls_server_config.min_version: TLS13 is above max_version TLS12",
        ),
        (
            "  min_version: TLS13\n",
            ":1: tls_server_config: TLS needs one of cert or cert_file",
        ),
    ],
    ids=[
        "no-cert",
        "no-key",
        "empty-cert-path",
        "cert-twice",
        "ca-without-auth",
        "verify-without-ca",
        "require-any",
        "request",
        "cipher-suites",
        "curves",
        "sans-without-verify",
        "versions-crossed",
        "settings-without-cert",
    ],
)
def test_tls_settings_that_cannot_work_are_refused(tmp_path, tls, expected):
    """Combinations that cannot work, and what Python's ssl cannot honour,
    are errors naming the key and why, before any file is read."""
    path = write(tmp_path, "tls_server_config:\n" + tls)

    problems = problems_of(path)

    assert problems[0].startswith(f"{path}{expected}"), problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "http_server_config:\n  headers:\n    Server: netwatch\n",
            ":3: http_server_config.headers.Server: cannot be configured; these can:",
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
            ":3: http_server_config.headers.X-Frame-Options: must be one of: deny, "
            "sameorigin",
        ),
        (
            'http_server_config:\n  headers:\n    X-XSS-Protection: "1\\r\\nX: y"\n',
            ":3: http_server_config.headers.X-XSS-Protection: a header value cannot",
        ),
        ("rate_limit:\n  interval: 1s\n", ":1: rate_limit.burst: must be at least 1"),
        (f"basic_auth_users:\n  'a:b': '{HASH}'\n", ":2: basic_auth_users.a:b: a user"),
    ],
    ids=["header-name", "header-value", "header-newline", "burst-zero", "user-colon"],
)
def test_headers_limits_and_users_that_cannot_work_are_refused(
    tmp_path, text, expected
):
    """Headers outside the toolkit's list, values it does not allow, a rate
    limit that refuses everything and unusable user names are errors."""
    path = write(tmp_path, text)

    problems = problems_of(path)

    assert problems[0].startswith(f"{path}{expected}"), problems


@pytest.mark.parametrize(
    "stored",
    [
        "$2y$10$short",
        "secret",
        "$1$saltsalt$abcdefghijklmnopqrstuv",
        "$2y$03$" + "a" * 53,
        HASH + "\n",
    ],
    ids=["truncated", "plain-text", "md5-crypt", "cost-too-low", "newline"],
)
def test_a_bad_bcrypt_hash_is_refused_without_repeating_it(tmp_path, stored):
    """A value that is not a bcrypt hash names the user and line, and the
    value itself stays out of the message (it may be a password)."""
    path = write(tmp_path, "basic_auth_users:\n  bob: " + json.dumps(stored) + "\n")

    problems = problems_of(path)

    assert len(problems) == 1
    assert problems[0].startswith(f"{path}:2: basic_auth_users.bob: not a bcrypt hash")
    assert stored.strip() not in problems[0]


def test_relative_paths_are_relative_to_the_files_folder(tmp_path, pki, monkeypatch):
    """cert_file, key_file and client_ca_file written relative are read from
    the web configuration file's folder, whatever the working directory."""
    folder = tmp_path / "conf"
    (folder / "tls").mkdir(parents=True)
    shutil.copy(pki.server.cert, folder / "tls/server.crt")
    shutil.copy(pki.server.key, folder / "tls/server.key")
    shutil.copy(pki.ca.cert, folder / "ca.crt")
    write(
        folder,
        "tls_server_config:\n"
        "  cert_file: tls/server.crt\n"
        "  key_file: tls/server.key\n"
        "  client_ca_file: ca.crt\n"
        "  client_auth_type: VerifyClientCertIfGiven\n",
    )
    monkeypatch.chdir(tmp_path)

    loaded = load_web_config(Path("conf/web.yml"))

    assert loaded.context is not None
    assert loaded.context.verify_mode == ssl.CERT_OPTIONAL
    assert loaded.config.tls is not None
    assert loaded.config.tls.cert_file == Path("conf/tls/server.crt")


def tls_file(
    folder: Path, cert: Path, key: Path, extra: str = "", name: str = "web.yml"
) -> Path:
    text = f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n" + extra
    return write(folder, text, name)


def test_unusable_files_are_named(tmp_path, pki):
    """A certificate that is missing, a key of another certificate and a CA
    file without certificates are each refused, naming the key."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    missing = tls_file(tmp_path, tmp_path / "nowhere.crt", pki.server.key)
    mismatched = tls_file(tmp_path, pki.server.cert, pki.client.key, name="key.yml")
    bad_ca = tls_file(
        tmp_path,
        pki.server.cert,
        pki.server.key,
        f"  client_ca_file: {garbage}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n",
        name="ca.yml",
    )

    assert problems_of(missing) == [
        f"{missing}:2: tls_server_config.cert_file: cannot read "
        f"{tmp_path / 'nowhere.crt'}: No such file or directory"
    ]
    [mismatch] = problems_of(mismatched)
    assert mismatch.startswith(
        f"{mismatched}:1: tls_server_config: cannot use the certificate and key "
        f"{pki.server.cert} and {pki.client.key}: "
    )
    [ca_problem] = problems_of(bad_ca)
    assert ca_problem.startswith(
        f"{bad_ca}:4: tls_server_config.client_ca_file: no usable CA certificate"
    )


def test_an_encrypted_key_is_refused_without_prompting(tmp_path, pki):
    """An encrypted key is an error, never a password prompt on the terminal."""
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(pki.server.key), "-aes256",
         "-passout", "pass:hunter2", "-out", str(encrypted)],
        check=True, capture_output=True,
    )  # fmt: skip
    path = tls_file(tmp_path, pki.server.cert, encrypted)

    problems = problems_of(path)

    assert problems == [
        f"{path}:1: tls_server_config: the key is encrypted; give an unencrypted key"
    ]


def test_inline_pem_is_used_like_files(tmp_path, pki):
    """cert, key and client_ca given inline load as their files do."""

    def block(path: Path) -> str:
        return "|\n" + "".join(
            f"    {line}\n" for line in path.read_text().splitlines()
        )

    path = write(
        tmp_path,
        "tls_server_config:\n"
        f"  cert: {block(pki.server.cert)}"
        f"  key: {block(pki.server.key)}"
        f"  client_ca: {block(pki.ca.cert)}"
        "  client_auth_type: RequireAndVerifyClientCert\n",
    )

    loaded = load_web_config(path)

    assert loaded.context is not None
    assert loaded.context.cert_store_stats()["x509_ca"] == 1
    assert "PRIVATE KEY" not in repr(loaded.config)


def test_what_cannot_be_honoured_fully_is_logged(tmp_path, pki):
    """http2: true and TLS 1.0/1.1 are accepted, each with a WARNING line."""
    path = tls_file(
        tmp_path,
        pki.server.cert,
        pki.server.key,
        "  min_version: TLS11\nhttp_server_config:\n  http2: true\n",
    )

    with capture_logs() as logs:
        loaded = load_web_config(path)

    warned = [e for e in logs if e["event"] == "web_config.not_honoured"]
    reasons = [e["reason"] for e in warned]
    assert [e["log_level"] for e in warned] == ["warning", "warning"]
    assert reasons[0].startswith("http_server_config.http2: netwatch serves HTTP/1.1")
    assert reasons[1].startswith("tls_server_config.min_version: TLS11 is deprecated")
    assert loaded.warnings == tuple(reasons)


async def test_basic_auth_accepts_only_a_known_user_with_its_password():
    """The right user and password pass; a wrong password, an unknown user,
    no header, another scheme and a malformed header do not."""
    auth = BasicAuth({"alice": HASH, "bob": HASH})

    right = await auth.check(basic("alice", PASSWORD))
    other_user = await auth.check(basic("bob", PASSWORD))
    wrong = await auth.check(basic("alice", "guess"))
    unknown = await auth.check(basic("mallory", PASSWORD))
    prefix = await auth.check(basic("alic", PASSWORD))
    missing = await auth.check(None)
    bearer = await auth.check("Bearer abc")
    malformed = await auth.check("Basic !!!")

    assert (right, other_user) == (True, True)
    assert not any([wrong, unknown, prefix, missing, bearer, malformed])


async def test_basic_auth_remembers_successes_only():
    """A successful check is cached (bcrypt runs once for it); failures run
    bcrypt every time, unknown users included, so timing shows no one which
    users exist, and no failure can push a success out of the cache."""
    auth = BasicAuth({"alice": HASH})

    for _ in range(3):
        assert await auth.check(basic("alice", PASSWORD))
    after_successes = auth.checks_run
    for _ in range(2):
        assert not await auth.check(basic("alice", "guess"))
    assert not await auth.check(basic("mallory", PASSWORD))

    assert after_successes == 1
    assert auth.checks_run == 4


async def test_basic_auth_takes_the_bytes_the_client_sent():
    """A non-ASCII password is compared as the UTF-8 bytes sent; a password
    longer than bcrypt's 72 bytes is refused, not an error."""
    stored = bcrypt.hashpw("pässwörd".encode(), bcrypt.gensalt(4)).decode()
    auth = BasicAuth({"zoë": stored})

    accepted = await auth.check(basic("zoë".encode(), "pässwörd".encode()))
    too_long = await auth.check(basic("zoë".encode(), b"x" * 100))

    assert accepted is True
    assert too_long is False


def test_token_bucket_allows_a_burst_then_one_per_interval():
    """Starting full: `burst` requests at once, then one per interval."""
    now = [100.0]
    bucket = TokenBucket(interval_s=1.0, burst=2, clock=lambda: now[0])

    burst = [bucket.allow() for _ in range(3)]
    now[0] += 0.5
    half = bucket.allow()
    now[0] += 0.5
    whole = bucket.allow()

    assert burst == [True, True, False]
    assert (half, whole) == (False, True)


def test_allowed_sans_match_exactly_and_ips_in_any_spelling():
    """DNS names match exactly; IPv6 matches whatever its spelling; no
    certificate, or no allowed name, is refused."""
    cert = {"subjectAltName": (("DNS", "scraper"), ("IP Address", "0:0:0:0:0:0:0:1"))}

    assert san_allowed(cert, ("scraper",))
    assert san_allowed(cert, ("::1",))
    assert not san_allowed(cert, ("Scraper", "scraper.example"))
    assert not san_allowed(None, ("scraper",))
    assert not san_allowed({}, ("scraper",))


def test_the_self_check_skips_verification_only_over_tls(tmp_path, pki):
    """netwatch health speaks plain HTTP without TLS; with TLS it does not
    verify its own daemon, and presents a client certificate only if given."""
    plain = read_web_config(write(tmp_path, "basic_auth_users: {}\n", "plain.yml"))
    tls = read_web_config(tls_file(tmp_path, pki.server.cert, pki.server.key))

    no_tls = self_check_context(plain)
    bare = self_check_context(tls)
    with_cert = self_check_context(tls, pki.client.cert, pki.client.key)

    assert no_tls is None
    assert bare is not None
    assert (bare.verify_mode, bare.check_hostname) == (ssl.CERT_NONE, False)
    assert with_cert is not None


# The guard over real TLS on loopback.


@contextlib.asynccontextmanager
async def serving(guard: WebGuard) -> AsyncIterator[int]:
    matrix = ReachabilityMatrix(MatrixSettings())
    app = build_app(
        WebSources(matrix.snapshot, lambda: True, CollectorRegistry()), guard
    )
    runner = await start_server(app, "127.0.0.1", 0, ssl_context=guard.ssl_context)
    try:
        port = bound_port(runner)
        assert port is not None
        yield port
    finally:
        await runner.cleanup()


async def fetch(
    port: int,
    path: str = "/-/healthy",
    *,
    trust: Path | None,
    cert: Pair | None = None,
    auth: tuple[str, str] | None = None,
    method: str = "GET",
) -> aiohttp.ClientResponse:
    """One request on a new connection; the answer is read and closed."""
    scheme = "http"
    context: ssl.SSLContext | bool = False
    if trust is not None:
        scheme = "https"
        context = ssl.create_default_context(cafile=trust)
        if cert is not None:
            context.load_cert_chain(cert.cert, cert.key)
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            f"{scheme}://127.0.0.1:{port}{path}",
            ssl=context,
            headers={"Authorization": basic(*auth)} if auth else None,
        ) as response,
    ):
        await response.read()
        return response


def guard_for(folder: Path, text: str) -> WebGuard:
    return WebGuard(load_web_config(write(folder, text)))


def tls_text(server: Pair, extra: str = "") -> str:
    return (
        f"tls_server_config:\n  cert_file: {server.cert}\n  key_file: {server.key}\n"
        + extra
    )


async def test_every_route_is_behind_basic_auth_with_the_files_headers(tmp_path, pki):
    """With users configured, every route answers 401 (asking for basic auth)
    without credentials and serves with them; the file's headers are on
    every answer, refusals included."""
    guard = guard_for(
        tmp_path,
        tls_text(pki.server) + f"basic_auth_users:\n  alice: '{HASH}'\n"
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
    )

    async with serving(guard) as port:
        refused = {
            (method, path): await fetch(port, path, trust=pki.ca.cert, method=method)
            for method, path in ROUTES
        }
        served = {
            (method, path): await fetch(
                port, path, trust=pki.ca.cert, method=method, auth=("alice", PASSWORD)
            )
            for method, path in ROUTES
        }
        unknown = await fetch(port, "/nowhere", trust=pki.ca.cert)

    for route, response in [*refused.items(), ("/nowhere", unknown)]:
        assert response.status == 401, route
        assert response.headers["WWW-Authenticate"].startswith("Basic"), route
        assert response.headers["X-Frame-Options"] == "deny", route
    for route, response in served.items():
        # /-/reload answers 503: this app was built without a reload.
        assert response.status in (200, 503), route
        assert response.headers["X-Frame-Options"] == "deny", route
    # One bcrypt run for all the successes.
    assert guard.auth.checks_run == 1


async def test_plain_http_is_refused_on_the_tls_port(tmp_path, pki):
    """A client speaking plain HTTP to the TLS port gets no HTTP answer."""
    guard = guard_for(tmp_path, tls_text(pki.server))

    async with serving(guard) as port:
        with pytest.raises(aiohttp.ClientError):
            await fetch(port, trust=None)
        served = await fetch(port, trust=pki.ca.cert)

    assert served.status == 200


async def test_rate_limit_answers_429_beyond_the_burst(tmp_path, pki):
    """Beyond the burst, requests get 429 until the bucket refills."""
    guard = guard_for(
        tmp_path, tls_text(pki.server, "rate_limit:\n  interval: 1h\n  burst: 2\n")
    )

    async with serving(guard) as port:
        statuses = [(await fetch(port, trust=pki.ca.cert)).status for _ in range(3)]

    assert statuses == [200, 200, 429]


async def test_client_certificates_are_verified_and_their_names_checked(tmp_path, pki):
    """With RequireAndVerifyClientCert, a client without a certificate or
    with one no trusted CA signed is refused; with client_allowed_sans, a
    verified certificate must also carry an allowed name."""
    mutual = (
        f"  client_ca_file: {pki.ca.cert}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
    )
    named = guard_for(
        tmp_path, tls_text(pki.server, mutual + "  client_allowed_sans: [scraper]\n")
    )
    misnamed = guard_for(
        tmp_path, tls_text(pki.server, mutual + "  client_allowed_sans: [other]\n")
    )

    async with serving(named) as port:
        with pytest.raises(aiohttp.ClientError):
            await fetch(port, trust=pki.ca.cert)
        with pytest.raises(aiohttp.ClientError):
            await fetch(port, trust=pki.ca.cert, cert=pki.stranger)
        accepted = await fetch(port, trust=pki.ca.cert, cert=pki.client)
    async with serving(misnamed) as port:
        forbidden = await fetch(port, trust=pki.ca.cert, cert=pki.client)

    assert accepted.status == 200
    assert forbidden.status == 403


async def test_adopting_a_newer_file_changes_certificate_ca_and_users(tmp_path, pki):
    """After adopt, new connections get the new certificate (the old one is
    gone), the new client CA alone is trusted, and the new users alone get
    in; nothing waits for a restart."""
    first = tls_text(
        pki.server,
        f"  client_ca_file: {pki.ca.cert}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        f"basic_auth_users:\n  alice: '{HASH}'\n",
    )
    guard = guard_for(tmp_path, first)
    newer = tls_text(
        pki.other_server,
        f"  client_ca_file: {pki.other_ca.cert}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        f"basic_auth_users:\n  bob: '{HASH}'\n",
    )
    newer_loaded = load_web_config(write(tmp_path, newer, "newer.yml"))
    # A client certificate of the other authority.
    other_client = pki.other_server

    async with serving(guard) as port:
        before = await fetch(
            port, trust=pki.ca.cert, cert=pki.client, auth=("alice", PASSWORD)
        )
        waits = guard.adopt(newer_loaded)
        with pytest.raises(aiohttp.ClientError):
            # Trusting the old authority only: what is served now is not its.
            await fetch(
                port, trust=pki.ca.cert, cert=other_client, auth=("bob", PASSWORD)
            )
        with pytest.raises(aiohttp.ClientError):
            # The old client CA is trusted no more.
            await fetch(
                port, trust=pki.other_ca.cert, cert=pki.client, auth=("bob", PASSWORD)
            )
        old_user = await fetch(
            port, trust=pki.other_ca.cert, cert=other_client, auth=("alice", PASSWORD)
        )
        new_user = await fetch(
            port, trust=pki.other_ca.cert, cert=other_client, auth=("bob", PASSWORD)
        )

    assert before.status == 200
    assert waits == ()
    assert old_user.status == 401
    assert new_user.status == 200


async def test_turning_tls_off_waits_for_a_restart(tmp_path, pki):
    """A newer file without TLS keeps TLS on (the socket is TLS) and says
    so; its users apply at once."""
    guard = guard_for(tmp_path, tls_text(pki.server))
    plain = load_web_config(
        write(tmp_path, f"basic_auth_users:\n  alice: '{HASH}'\n", "plain.yml")
    )

    async with serving(guard) as port:
        waits = guard.adopt(plain)
        refused = await fetch(port, trust=pki.ca.cert)
        served = await fetch(port, trust=pki.ca.cert, auth=("alice", PASSWORD))

    assert waits == ("tls_server_config",)
    assert (refused.status, served.status) == (401, 200)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing-file", "cannot read: No such file or directory"),
        ("bad-yaml", "not valid YAML"),
        ("unreadable-cert", "tls_server_config.cert_file: cannot read"),
        ("bad-hash", "basic_auth_users.alice: not a bcrypt hash"),
    ],
)
def test_netwatch_run_refuses_a_broken_web_config_before_starting(
    tmp_path, case, expected
):
    """`netwatch run` with a broken web configuration exits 2 naming the
    problem, and starts nothing (no listening, no engine)."""
    files = {
        "bad-yaml": "basic_auth_users: {alice\n",
        "unreadable-cert": f"tls_server_config:\n  cert_file: {tmp_path}/none.crt\n"
        "  key_file: none.key\n",
        "bad-hash": "basic_auth_users:\n  alice: hunter2\n",
    }
    path = tmp_path / "web.yml"
    if case in files:
        path.write_text(files[case])
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETWATCH_")}
    # An engine that would hang if anything got as far as using it.
    env["DOCKER_HOST"] = "tcp://127.0.0.1:9"

    done = subprocess.run(
        [sys.executable, "-m", "netwatch", "run", "--listen", "127.0.0.1:0",
         "--web.config.file", str(path)],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )  # fmt: skip

    assert done.returncode == 2, done.stderr
    assert str(path) in done.stderr
    assert expected in done.stderr
    assert "daemon.listening" not in done.stderr + done.stdout
