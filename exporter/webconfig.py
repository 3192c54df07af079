"""`--web.config.file` in the exporter-toolkit format: TLS, client certificates and basic auth."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from exporter.config import ConfigError

log = logging.getLogger(__name__)

_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3,
}
# The response headers exporter-toolkit lets a web config set.
_ALLOWED_HEADERS = (
    "Content-Security-Policy", "Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options",
    "X-XSS-Protection",
)
# Accepted so a file promtool accepts works, but Python's ssl module offers no equivalent of Go's settings.
_IGNORED_TLS_KEYS = {"cipher_suites", "curve_preferences", "prefer_server_cipher_suites"}
_TLS_KEYS = {
    "cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version",
    "cipher_suites", "curve_preferences", "prefer_server_cipher_suites", "client_allowed_sans",
}


@dataclass(frozen=True)
class WebConfig:
    tls: ssl.SSLContext | None = None
    allowed_sans: tuple[str, ...] = ()  # client certificates must carry one of these SANs, when set
    users: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


class BasicAuth:
    """Checks `Authorization: Basic …` against bcrypt hashes in constant time; caches verified pairs."""

    def __init__(self, users: dict[str, bytes]) -> None:
        self._users = users
        self._dummy: bytes | None = None
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def _dummy_hash(self) -> bytes:
        """Checked for unknown users, at the highest cost configured, so a wrong name takes as long as a
        wrong password and timing does not tell which user names exist. Made on first need, not at start."""
        if self._dummy is None:
            rounds = max(int(hashed.split(b"$")[2]) for hashed in self._users.values())
            self._dummy = bcrypt.hashpw(b"no such user", bcrypt.gensalt(rounds=rounds))
        return self._dummy

    def check(self, header: str | None) -> bool:
        if not self._users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        known = next((name for name in self._users if hmac.compare_digest(name.encode(), user.encode())), None)
        hashed = self._users[known] if known is not None else self._dummy_hash()
        # Keyed by the hash too, so changing a user's hash in a reload invalidates the cache entry.
        key = hashlib.sha256(b"\0".join([user.encode(), password.encode(), hashed])).digest()
        with self._lock:
            cached = key in self._verified
        if cached:
            return known is not None
        try:
            matches = bcrypt.checkpw(password.encode(), hashed)
        except ValueError:  # bcrypt 5 refuses passwords over 72 bytes; no configured one can be that long
            matches = False
        ok = matches and known is not None
        if ok:
            with self._lock:
                self._verified.add(key)
        return ok


def _mapping(value: object, key: str, allowed: set[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: must be a mapping")
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}: unknown key")
    return value


def _file(base: Path, value: object, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: must be a file path")
    path = base / value
    if not path.is_file():
        raise ConfigError(f"{key}: no such file {path}")
    return str(path)


def _tls(raw: dict[str, Any], base: Path) -> ssl.SSLContext | None:
    if not raw:
        return None
    if "cert_file" not in raw or "key_file" not in raw:
        raise ConfigError("tls_server_config: cert_file and key_file are both required")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(
            _file(base, raw["cert_file"], "tls_server_config.cert_file"),
            _file(base, raw["key_file"], "tls_server_config.key_file"),
            password=lambda: b"",  # an encrypted key fails here instead of prompting on a terminal
        )
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or "not a PEM certificate and matching key"
        raise ConfigError(
            f"tls_server_config: cannot load certificate and key: {reason} (an unencrypted PEM key is needed)"
        ) from None
    for key, attribute in (("min_version", "minimum_version"), ("max_version", "maximum_version")):
        if key in raw:
            if not isinstance(raw[key], str) or raw[key] not in _TLS_VERSIONS:
                raise ConfigError(f"tls_server_config.{key}: unknown TLS version {raw[key]!r}")
            setattr(context, attribute, _TLS_VERSIONS[raw[key]])
    auth_type = raw.get("client_auth_type", "NoClientCert")
    if not isinstance(auth_type, str) or auth_type not in _CLIENT_AUTH:
        raise ConfigError(f"tls_server_config.client_auth_type: unknown value {auth_type!r}")
    if "client_ca_file" in raw:
        ca_file = _file(base, raw["client_ca_file"], "tls_server_config.client_ca_file")
        try:
            context.load_verify_locations(ca_file)
        except ssl.SSLError:
            raise ConfigError(f"tls_server_config.client_ca_file: {ca_file} holds no PEM certificate") from None
    elif auth_type != "NoClientCert":
        # Python's TLS verifies every client certificate it asks for, so it needs the CA for all of these.
        raise ConfigError(f"tls_server_config.client_ca_file: required here with client_auth_type {auth_type}")
    context.verify_mode = _CLIENT_AUTH[auth_type]
    return context


def _strings(value: object, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{key}: must be a list of strings")
    return tuple(value)


def load_web_config(path: str) -> WebConfig:
    """Read the file; relative paths in it are relative to the file, as in exporter-toolkit."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read web config file: {exc.strerror}") from None
    except (yaml.YAMLError, ValueError, RecursionError):
        raise ConfigError(f"{path}: web config file is not valid YAML text") from None
    try:
        top = _mapping(raw, "web config", {"tls_server_config", "http_server_config", "basic_auth_users"})
        base = Path(path).parent
        tls_raw = _mapping(top.get("tls_server_config"), "tls_server_config", _TLS_KEYS)
        allowed_sans = _strings(tls_raw.get("client_allowed_sans"), "tls_server_config.client_allowed_sans")
        tls = _tls(tls_raw, base)
        if allowed_sans and (tls is None or tls.verify_mode != ssl.CERT_REQUIRED):
            raise ConfigError(
                "tls_server_config.client_allowed_sans: needs client_auth_type RequireAndVerifyClientCert"
            )
        http = _mapping(top.get("http_server_config"), "http_server_config", {"http2", "headers"})
        header_values = http.get("headers") or {}
        if not isinstance(header_values, dict):
            raise ConfigError("http_server_config.headers: must be a mapping of header names to values")
        headers: dict[str, str] = {}
        for name, value in header_values.items():
            if name not in _ALLOWED_HEADERS:
                raise ConfigError(f"http_server_config.headers.{name}: not one of {', '.join(_ALLOWED_HEADERS)}")
            if not isinstance(value, str) or not value.isprintable():
                raise ConfigError(f"http_server_config.headers.{name}: must be one line of text")
            headers[name] = value
        users_raw = top.get("basic_auth_users") or {}
        if not isinstance(users_raw, dict):
            raise ConfigError("basic_auth_users: must be a mapping of user names to bcrypt hashes")
        users: dict[str, bytes] = {}
        for user, hashed in users_raw.items():
            match = re.match(r"^\$2[aby]\$(\d\d)\$.{53}$", hashed) if isinstance(hashed, str) else None
            if match is None or not 4 <= int(match.group(1)) <= 31:
                raise ConfigError(f"basic_auth_users.{user}: must be a bcrypt hash (cost 04 to 31)")
            users[str(user)] = hashed.encode()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    ignored = sorted(set(tls_raw) & _IGNORED_TLS_KEYS) + (["http2"] if "http2" in http else [])
    if ignored:
        log.warning("web config keys without effect here", extra={"path": path, "keys": ", ".join(ignored)})
    return WebConfig(tls=tls, allowed_sans=allowed_sans, users=users, headers=headers)
