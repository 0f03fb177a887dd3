"""The web configuration file of Prometheus exporters (`--web.config.file`):
TLS for the HTTP server, basic auth with bcrypt-hashed passwords, extra
response headers and a rate limit, in the exporter toolkit's format
(https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md),
so that one file serves netwatch and the exporters beside it.

Python's `ssl` module cannot do everything Go's TLS does. What it cannot do
is refused with the reason, never dropped: Go's cipher suite and curve
names, and client certificates asked for but not verified. HTTP/2 is not
served: a file asking for it is accepted with a warning, since clients fall
back to HTTP/1.1.

`load_web_config` reads the file and every file it names, once; `WebGuard`
enforces what was loaded, and `adopt`s a newer load while the server runs:
certificates, client CAs, TLS versions and client checks apply to the next
connection, users, headers and the rate limit to the next request. Only
turning TLS on or off waits for a restart (the socket is plain or TLS).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import ipaddress
import os
import re
import ssl
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import bcrypt
import structlog
from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from netwatch.config import Count, Section, Wait
from netwatch.errors import ConfigError
from netwatch.validation import shorten
from netwatch.yamlfile import KeyPath, line_of, read_yaml

log = structlog.get_logger("netwatch.webconfig")


def _unset_if_empty(value: object) -> object:
    # The toolkit reads an empty string as "not set".
    return None if value == "" else value


OptionalPath = Annotated[Path | None, BeforeValidator(_unset_if_empty)]
OptionalText = Annotated[str | None, BeforeValidator(_unset_if_empty)]

ClientAuthType = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    # The toolkit's old name for RequireAnyClientCert.
    "RequireClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
TlsVersionName = Literal["TLS10", "TLS11", "TLS12", "TLS13"]

_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_VERIFY_MODES = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# Go can ask for a client certificate and not verify it; Python's ssl module
# verifies every certificate it asks for (it has no verification callback).
_UNVERIFIED = {"RequestClientCert", "RequireAnyClientCert", "RequireClientCert"}

# The headers the toolkit lets a file set, and the values it allows (None:
# any). Kept to these on purpose, as in every Prometheus component.
ALLOWED_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}

# The modular crypt format of bcrypt: version, cost, 22 characters of salt
# and 31 of hash.
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}")


class TlsServerConfig(Section):
    cert: OptionalText = None
    key: Annotated[SecretStr | None, BeforeValidator(_unset_if_empty)] = None
    cert_file: OptionalPath = None
    key_file: OptionalPath = None
    client_ca: OptionalText = None
    client_ca_file: OptionalPath = None
    client_auth_type: ClientAuthType = "NoClientCert"
    client_allowed_sans: tuple[str, ...] | None = None
    min_version: TlsVersionName = "TLS12"
    max_version: TlsVersionName = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    curve_preferences: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True

    @property
    def enabled(self) -> bool:
        """A section that sets anything turns TLS on (and then needs a
        certificate and a key); an empty one leaves it off."""
        return bool(self.model_fields_set)


class HttpServerConfig(Section):
    http2: bool = True
    headers: dict[str, str] = Field(default_factory=dict)


class RateLimit(Section):
    # Time between two requests, server-wide; 0 turns the limit off.
    interval: Wait = 0.0
    burst: Count = Field(default=0, ge=0)


class WebConfig(Section):
    """The file, validated; paths are still as written."""

    tls_server_config: TlsServerConfig | None = None
    http_server_config: HttpServerConfig = Field(default_factory=HttpServerConfig)
    basic_auth_users: dict[str, str] = Field(default_factory=dict, repr=False)
    rate_limit: RateLimit = Field(default_factory=RateLimit)

    @model_validator(mode="before")
    @classmethod
    def _null_sections(cls, data: object) -> object:
        # `section:` with nothing under it reads as null in YAML: no settings.
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data

    @property
    def tls(self) -> TlsServerConfig | None:
        """The TLS settings, when TLS is on."""
        tls = self.tls_server_config
        return tls if tls is not None and tls.enabled else None


@dataclass(frozen=True)
class TlsMaterial:
    """What the TLS settings name, read into memory once."""

    cert_chain: bytes
    key: bytes
    client_ca: str | None


@dataclass(frozen=True)
class LoadedWebConfig:
    """A web configuration file with everything it names: what a `WebGuard`
    enforces."""

    path: Path
    config: WebConfig
    # A complete context for connections: certificate, key, client CAs.
    context: ssl.SSLContext | None
    # Keys accepted that netwatch cannot honour fully, with why.
    warnings: tuple[str, ...] = ()


Where = Callable[[KeyPath], str]


def _problem(where: Where, location: KeyPath, message: str) -> str:
    dotted = ".".join(str(part) for part in location) or "(top level)"
    return f"{where(location)}: {dotted}: {message}"


# Values never repeated in an error message.
_SECRET_KEYS = {"basic_auth_users", "key"}


def _describe(error: Mapping[str, Any], where: Where) -> str:
    location: KeyPath = tuple(
        part for part in error["loc"] if part not in ("[key]",) and part is not None
    )
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif not _SECRET_KEYS & {str(part) for part in location} and not isinstance(
        error.get("input"), dict | list | type(None)
    ):
        message = f"{message} (got {shorten(str(error['input']))})"
    return _problem(where, location, message)


def _tls_problems(tls: TlsServerConfig) -> list[tuple[KeyPath, str]]:
    section: KeyPath = ("tls_server_config",)
    problems: list[tuple[KeyPath, str]] = []

    def at(key: str, message: str) -> None:
        problems.append(((*section, key), message))

    if tls.cipher_suites:
        at(
            "cipher_suites",
            "netwatch cannot honour this: Python's ssl module names ciphers the "
            "OpenSSL way, not Go's; remove it to use OpenSSL's defaults",
        )
    if tls.curve_preferences:
        at(
            "curve_preferences",
            "netwatch cannot honour this: Python's ssl module cannot set a list "
            "of curves; remove it to use OpenSSL's defaults",
        )
    for inline, file in (("cert", "cert_file"), ("key", "key_file")):
        if getattr(tls, inline) is not None and getattr(tls, file) is not None:
            at(inline, f"give {inline} or {file}, not both")
        elif getattr(tls, inline) is None and getattr(tls, file) is None:
            problems.append((section, f"TLS needs one of {inline} or {file}"))
    ca_given = tls.client_ca is not None or tls.client_ca_file is not None
    if tls.client_ca is not None and tls.client_ca_file is not None:
        at("client_ca", "give client_ca or client_ca_file, not both")
    auth = tls.client_auth_type
    if auth in _UNVERIFIED:
        at(
            "client_auth_type",
            f"{auth} is not supported: Python's ssl module verifies every "
            "client certificate it asks for; use RequireAndVerifyClientCert "
            "(or VerifyClientCertIfGiven) with client_ca_file",
        )
    elif auth != "NoClientCert" and not ca_given:
        at("client_auth_type", f"{auth} needs client_ca_file (or client_ca)")
    elif auth == "NoClientCert" and ca_given:
        key = "client_ca_file" if tls.client_ca_file is not None else "client_ca"
        at(
            key,
            "a client CA without a client_auth_type that verifies "
            "(RequireAndVerifyClientCert or VerifyClientCertIfGiven)",
        )
    if tls.client_allowed_sans is not None and auth != "RequireAndVerifyClientCert":
        at("client_allowed_sans", "needs client_auth_type RequireAndVerifyClientCert")
    if _TLS_VERSIONS[tls.min_version] > _TLS_VERSIONS[tls.max_version]:
        at("min_version", f"{tls.min_version} is above max_version {tls.max_version}")
    return problems


def _problems(config: WebConfig) -> list[tuple[KeyPath, str]]:
    """What the schema alone cannot see: combinations, hashes, headers."""
    problems: list[tuple[KeyPath, str]] = []
    if config.tls is not None:
        problems += _tls_problems(config.tls)
    for user, stored in config.basic_auth_users.items():
        if ":" in user:
            problems.append(
                (("basic_auth_users", user), "a user name cannot contain ':'")
            )
        if not _BCRYPT_HASH.fullmatch(stored):
            problems.append(
                (
                    ("basic_auth_users", user),
                    "not a bcrypt hash ($2a$, $2b$ or $2y$, a cost from 04 to 31, "
                    "53 characters of salt and hash); make one with "
                    "`htpasswd -nBC 10 \"\" | tr -d ':\\n'`",
                )
            )
    for name, value in config.http_server_config.headers.items():
        location = ("http_server_config", "headers", name)
        if name not in ALLOWED_HEADERS:
            allowed = ", ".join(ALLOWED_HEADERS)
            problems.append((location, f"cannot be configured; these can: {allowed}"))
            continue
        values = ALLOWED_HEADERS[name]
        if values is not None and value not in values:
            problems.append((location, f"must be one of: {', '.join(values)}"))
        if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value):
            problems.append((location, "a header value cannot hold control characters"))
    limit = config.rate_limit
    if limit.interval > 0 and limit.burst == 0:
        problems.append(
            (
                ("rate_limit", "burst"),
                "must be at least 1: 0 would refuse every request",
            )
        )
    return problems


def _parse(path: Path) -> tuple[WebConfig, Where]:
    data, lines = read_yaml(path)

    def where(location: KeyPath) -> str:
        line = line_of(lines, location)
        return f"{path}:{line}" if line else str(path)

    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [f"{path}:1: the top level must be a mapping, not {type(data).__name__}"]
        )
    try:
        config = WebConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_describe(error, where) for error in exc.errors()]) from exc
    problems = _problems(config)
    if problems:
        raise ConfigError([_problem(where, loc, message) for loc, message in problems])
    return _resolved(config, path.parent), where


def _resolved(config: WebConfig, folder: Path) -> WebConfig:
    """Relative paths are relative to the web configuration file's folder."""
    tls = config.tls_server_config
    if tls is None:
        return config
    update = {
        key: folder / value
        for key in ("cert_file", "key_file", "client_ca_file")
        if (value := getattr(tls, key)) is not None and not value.is_absolute()
    }
    return config.model_copy(
        update={"tls_server_config": tls.model_copy(update=update)}
    )


def read_web_config(path: Path) -> WebConfig:
    """The file, validated, with its paths resolved; reads nothing it names.
    Raises ConfigError naming every problem with its line."""
    config, _ = _parse(path)
    return config


def _read(where: Where, key: str, file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        location = ("tls_server_config", key)
        raise ConfigError(
            [_problem(where, location, f"cannot read {file}: {exc.strerror or exc}")]
        ) from exc


def _material(tls: TlsServerConfig, where: Where) -> TlsMaterial:
    def pem(inline: str | None, key: str, file: Path | None) -> bytes:
        if file is not None:
            return _read(where, key, file)
        assert inline is not None  # checked by _tls_problems
        return inline.encode()

    key = tls.key.get_secret_value() if tls.key is not None else None
    client_ca = None
    if tls.client_ca_file is not None:
        client_ca = _read(where, "client_ca_file", tls.client_ca_file).decode(
            "ascii", errors="replace"
        )
    elif tls.client_ca is not None:
        client_ca = tls.client_ca
    return TlsMaterial(
        cert_chain=pem(tls.cert, "cert_file", tls.cert_file),
        key=pem(key, "key_file", tls.key_file),
        client_ca=client_ca,
    )


class _EncryptedKeyError(Exception):
    pass


def _no_password() -> str:
    # Without a callback, OpenSSL would prompt on the terminal for one.
    raise _EncryptedKeyError


@contextlib.contextmanager
def _in_memory(data: bytes, name: str) -> Iterator[str]:
    """A path to `data`: `load_cert_chain` reads only files, and the key read
    once (and checked) must be the key loaded, without touching a disk."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        with open(fd, "wb", closefd=False) as file:
            file.write(data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _handshake_settings(context: ssl.SSLContext, tls: TlsServerConfig) -> None:
    """What every new connection copies from the context it starts with."""
    context.verify_mode = _VERIFY_MODES[tls.client_auth_type]
    with warnings.catch_warnings():
        # TLS 1.0 and 1.1 are deprecated: _warnings logs it in netwatch's way.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
        context.minimum_version = _TLS_VERSIONS[tls.min_version]
        context.maximum_version = _TLS_VERSIONS[tls.max_version]
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE


# OpenSSL's reasons, as a person reads them.
_SSL_REASONS = {
    None: "not a PEM certificate chain and private key",
    "KEY_VALUES_MISMATCH": "the key is not the certificate's",
}


def _server_context(
    tls: TlsServerConfig, material: TlsMaterial, where: Where
) -> ssl.SSLContext:
    # Not create_default_context: for client certificates it would trust
    # the system's authorities, and only client_ca_file may be trusted.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _handshake_settings(context, tls)
    section = ("tls_server_config",)
    try:
        with (
            _in_memory(material.cert_chain, "netwatch-cert") as cert,
            _in_memory(material.key, "netwatch-key") as key,
        ):
            context.load_cert_chain(cert, key, password=_no_password)
    except _EncryptedKeyError:
        raise ConfigError(
            [_problem(where, section, "the key is encrypted; give an unencrypted key")]
        ) from None
    except ssl.SSLError as exc:
        names = " and ".join(
            str(file) for file in (tls.cert_file, tls.key_file) if file is not None
        )
        reason = _SSL_REASONS.get(exc.reason, exc.reason)
        raise ConfigError(
            [
                _problem(
                    where,
                    section,
                    f"cannot use the certificate and key{' ' + names if names else ''}"
                    f": {reason}",
                )
            ]
        ) from exc
    if material.client_ca is not None:
        key_name = "client_ca_file" if tls.client_ca_file is not None else "client_ca"
        try:
            context.load_verify_locations(cadata=material.client_ca)
        except (ssl.SSLError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or str(exc)
            raise ConfigError(
                [
                    _problem(
                        where,
                        (*section, key_name),
                        f"no usable CA certificate: {reason}",
                    )
                ]
            ) from exc
    return context


def _warnings(config: WebConfig) -> tuple[str, ...]:
    found = []
    http = config.http_server_config
    if "http2" in http.model_fields_set and http.http2:
        found.append(
            "http_server_config.http2: netwatch serves HTTP/1.1 only "
            "(aiohttp has no HTTP/2); clients fall back to it"
        )
    tls = config.tls
    if tls is not None and tls.min_version in ("TLS10", "TLS11"):
        found.append(
            f"tls_server_config.min_version: {tls.min_version} is deprecated; "
            "OpenSSL's security level may refuse it anyway"
        )
    return tuple(found)


def load_web_config(path: Path) -> LoadedWebConfig:
    """Reads the file and every file it names, checks them all (certificate
    and key usable together, client CAs, bcrypt hashes), and logs what it
    cannot honour fully. Raises ConfigError naming the problem."""
    config, where = _parse(path)
    tls = config.tls
    context = None
    if tls is not None:
        context = _server_context(tls, _material(tls, where), where)
    unhonoured = _warnings(config)
    for warning in unhonoured:
        log.warning("web_config.not_honoured", file=str(path), reason=warning)
    log.info(
        "web_config.loaded",
        file=str(path),
        tls=tls is not None,
        client_auth=tls.client_auth_type if tls is not None else None,
        users=len(config.basic_auth_users),
        rate_limit_interval_s=config.rate_limit.interval or None,
    )
    return LoadedWebConfig(path, config, context, unhonoured)


# Successful checks remembered; the oldest is forgotten first.
_CACHED_CHECKS = 100


def _bcrypt_matches(password: bytes, stored: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, stored)
    except ValueError:
        # bcrypt 5 refuses passwords over 72 bytes instead of truncating them.
        return False


def _credentials(authorization: str | None) -> tuple[bytes, bytes] | None:
    """User and password from a basic `Authorization` header, as the bytes
    the client sent (RFC 7617 sets no encoding); None when it is not one."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None


class BasicAuth:
    """Checks basic auth credentials against bcrypt hashes, as the exporter
    toolkit does.

    bcrypt is slow on purpose (about 70 ms at cost 10), so a check runs in a
    worker thread, one at a time (a flood of wrong passwords takes one
    thread, not the pool the daemon's own work needs), and a successful one
    is remembered, keyed by a hash of user, password and stored hash, so a
    scraper pays once. Failures are not remembered: they cannot push
    successes out. User names are compared in constant time, and an unknown
    user costs a full check too, so timing tells no one which users exist.
    """

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = [
            (hashlib.sha256(name.encode()).digest(), stored.encode())
            for name, stored in users.items()
        ]
        self._succeeded: OrderedDict[bytes, None] = OrderedDict()
        self._one_at_a_time = asyncio.Lock()
        # Counts bcrypt runs (tests read it).
        self.checks_run = 0

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def _stored_hash(self, user: bytes) -> bytes | None:
        wanted = hashlib.sha256(user).digest()
        found = None
        for name, stored in self._users:
            # Every name is compared, whether or not one matched already.
            if hmac.compare_digest(name, wanted) and found is None:
                found = stored
        return found

    async def check(self, authorization: str | None) -> bool:
        """Whether an `Authorization` header names a user and its password."""
        credentials = _credentials(authorization)
        if not self._users or credentials is None:
            return False
        user, password = credentials

        stored = self._stored_hash(user)
        key = hashlib.sha256(
            b"".join(len(part).to_bytes(4, "big") + part for part in (user, password))
            + (stored or b"")
        ).digest()
        if stored is not None and key in self._succeeded:
            self._succeeded.move_to_end(key)
            return True

        async with self._one_at_a_time:
            self.checks_run += 1
            # An unknown user is checked against a real hash, then refused.
            matches = await asyncio.to_thread(
                _bcrypt_matches, password, stored or self._users[0][1]
            )
        if not matches or stored is None:
            return False
        self._succeeded[key] = None
        while len(self._succeeded) > _CACHED_CHECKS:
            self._succeeded.popitem(last=False)
        return True


class TokenBucket:
    """The toolkit's rate limit: one request per `interval_s` on average,
    `burst` at once; the bucket starts full."""

    def __init__(
        self,
        interval_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval_s = interval_s
        self._burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def allow(self) -> bool:
        now = self._clock()
        self._tokens = min(
            float(self._burst), self._tokens + (now - self._at) / self._interval_s
        )
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def _normal_san(kind: str, value: str) -> str:
    if kind == "IP Address":
        # Python writes IPv6 in full (0:0:0:0:0:0:0:1), Go compressed (::1).
        with contextlib.suppress(ValueError):
            return str(ipaddress.ip_address(value.strip()))
    return value


def san_allowed(peercert: Mapping[str, Any] | None, allowed: tuple[str, ...]) -> bool:
    """Whether a verified client certificate has one of the allowed subject
    alternative names (DNS, IP, e-mail or URI), matched exactly."""
    if not peercert:
        return False
    wanted = {_normal_san("IP Address", value) for value in allowed}
    return any(
        _normal_san(kind, value) in wanted
        for kind, value in peercert.get("subjectAltName", ())
    )


class WebGuard:
    """What the HTTP server enforces from a loaded web configuration, and
    the TLS context its socket listens with.

    That context holds no certificate of its own: each new connection is
    handed, as its handshake starts, the complete context of the latest
    load (certificate chain, key, client CAs). Swapping whole contexts, not
    loading a new chain into the listening one, is what lets a reload drop
    an old certificate of another key type, or an old client CA: a context
    keeps one certificate per key type, and never forgets a CA. What a
    connection copies when it starts (client verification mode, TLS
    versions, cipher preference) is set on the listening context itself.
    """

    def __init__(self, loaded: LoadedWebConfig) -> None:
        self.loaded = loaded
        self.ssl_context: ssl.SSLContext | None = None
        if loaded.context is not None:
            assert loaded.config.tls is not None
            self.ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            _handshake_settings(self.ssl_context, loaded.config.tls)
            self.ssl_context.sni_callback = self._hand_over
        self._take(loaded)

    def _hand_over(
        self, connection: ssl.SSLObject, _server_name: str | None, _: ssl.SSLContext
    ) -> None:
        # Called for every ClientHello, with or without a server name.
        if self._context is not None:
            connection.context = self._context

    def _take(self, loaded: LoadedWebConfig) -> None:
        config = loaded.config
        self._context = loaded.context
        self.auth = BasicAuth(config.basic_auth_users)
        limit = config.rate_limit
        self._limiter = (
            TokenBucket(limit.interval, limit.burst) if limit.interval > 0 else None
        )
        self.headers: Mapping[str, str] = dict(config.http_server_config.headers)
        tls = config.tls
        sans = tls.client_allowed_sans if tls is not None else None
        self._allowed_sans = sans

    def adopt(self, loaded: LoadedWebConfig) -> tuple[str, ...]:
        """Enforces a newer load from the next connection and request on;
        returns the keys whose new values wait for a restart. Call it on the
        event loop's thread (handshakes read what it sets)."""
        if (loaded.context is None) != (self.ssl_context is None):
            # The socket is plain or TLS: the TLS part stays as it is.
            kept = self.loaded.config.tls_server_config
            config = loaded.config.model_copy(update={"tls_server_config": kept})
            self.loaded = LoadedWebConfig(
                loaded.path, config, self._context, loaded.warnings
            )
            self._take(self.loaded)
            return ("tls_server_config",)
        if self.ssl_context is not None:
            assert loaded.config.tls is not None
            _handshake_settings(self.ssl_context, loaded.config.tls)
        self.loaded = loaded
        self._take(loaded)
        return ()

    def allow_request(self) -> bool:
        """False when the rate limit is spent."""
        return self._limiter is None or self._limiter.allow()

    def client_allowed(self, peercert: Mapping[str, Any] | None) -> bool:
        """Whether the client certificate passes `client_allowed_sans`."""
        return self._allowed_sans is None or san_allowed(peercert, self._allowed_sans)

    async def authenticated(self, authorization: str | None) -> bool:
        """True when no users are configured, or the header names one."""
        return not self.auth.enabled or await self.auth.check(authorization)


def self_check_context(
    config: WebConfig | None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
) -> ssl.SSLContext | None:
    """The TLS context `netwatch health` asks its own daemon with; None when
    the daemon speaks plain HTTP.

    It does not verify the daemon's certificate: the check connects to the
    daemon's own listening address on this host (loopback when it listens
    on all interfaces), which the certificate need not name, and there is
    no one between a process and its own host to guard against. Nothing
    else in netwatch skips verification. It presents a client certificate
    only when given one."""
    if config is None or config.tls is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if client_cert is not None:
        try:
            context.load_cert_chain(client_cert, client_key, password=_no_password)
        except _EncryptedKeyError:
            raise ValueError(
                f"{client_key or client_cert}: the key is encrypted"
            ) from None
    return context
