"""`--web.config.file` in the exporter-toolkit format: TLS, client certificates and basic auth users, read
and validated into a frozen `WebConfig` (the run-time basic auth check is `exporter.auth`)."""

from __future__ import annotations

import logging
import os
import re
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter import yaml_text
from exporter.config import MAX_CONFIG_FILE, ConfigError, mapping
from exporter.errors import os_reason
from exporter.files import read_regular
from exporter.scrub import shown

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
    "cert_file", "key_file", "cert", "key", "client_auth_type", "client_ca_file", "min_version", "max_version",
    "cipher_suites", "curve_preferences", "prefer_server_cipher_suites", "client_allowed_sans",
}


@dataclass(frozen=True)
class WebConfig:
    tls: ssl.SSLContext | None = None
    allowed_sans: tuple[str, ...] = ()  # client certificates must carry one of these SANs, when set
    users: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    files: tuple[str, ...] = ()  # the files the TLS settings were read from, to notice a renewed certificate


def _file(base: Path, value: object, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: must be a file path")
    path = base / value
    if not path.is_file():
        raise ConfigError(f"{key}: no such file {path}")
    return str(path)


def _pem(value: object, key: str) -> str:
    if not isinstance(value, str) or "-----BEGIN " not in value:
        raise ConfigError(f"{key}: must be PEM text")
    return value


def _load_cert_chain(context: ssl.SSLContext, raw: Mapping[str, Any], base: Path) -> None:
    """cert_file/key_file, or cert/key inline as PEM text (exporter-toolkit's two ways, either per item).
    Python's ssl loads a chain from files only, so inline PEM goes through a private temporary directory
    that exists only during the load."""
    for item in ("cert", "key"):
        if f"{item}_file" in raw and item in raw:
            raise ConfigError(f"tls_server_config: {item} and {item}_file are mutually exclusive")
        if f"{item}_file" not in raw and item not in raw:
            raise ConfigError("tls_server_config: cert_file and key_file are both required (or cert and key inline)")
    with tempfile.TemporaryDirectory(prefix="web-config-") as private:
        paths: list[str] = []
        for item in ("cert", "key"):
            if item in raw:
                path = os.path.join(private, item)
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                    handle.write(_pem(raw[item], f"tls_server_config.{item}"))
                paths.append(path)
            else:
                paths.append(_file(base, raw[f"{item}_file"], f"tls_server_config.{item}_file"))
        # an encrypted key fails here instead of prompting on a terminal
        context.load_cert_chain(paths[0], paths[1], password=lambda: b"")


def _tls(raw: Mapping[str, Any], base: Path) -> ssl.SSLContext | None:
    if not raw:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        _load_cert_chain(context, raw, base)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or "not a PEM certificate and matching key"
        raise ConfigError(
            f"tls_server_config: cannot load certificate and key: {reason} (an unencrypted PEM key is needed)"
        ) from None
    for key, attribute in (("min_version", "minimum_version"), ("max_version", "maximum_version")):
        if key in raw:
            if not isinstance(raw[key], str) or raw[key] not in _TLS_VERSIONS:
                raise ConfigError(f"tls_server_config.{key}: unknown TLS version {shown(raw[key])}")
            setattr(context, attribute, _TLS_VERSIONS[raw[key]])
    auth_type = raw.get("client_auth_type", "NoClientCert")
    if not isinstance(auth_type, str) or auth_type not in _CLIENT_AUTH:
        raise ConfigError(f"tls_server_config.client_auth_type: unknown value {shown(auth_type)}")
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
    """Read the file; relative paths in it are relative to the file, as in exporter-toolkit. Only a regular
    file of at most the config's size cap is read, and opening never blocks (a FIFO is refused, so neither
    start-up nor the web front's re-read on the event loop can hang on one)."""
    try:
        raw = yaml_text.load(read_regular(path, MAX_CONFIG_FILE).decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read web config file: {os_reason(exc)}") from None
    except yaml_text.NotYAML as exc:
        raise ConfigError(f"{path}: web config file is {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: web config file is not UTF-8 text") from None
    try:
        top = mapping(
            raw, "web config", {"tls_server_config", "http_server_config", "basic_auth_users"}, optional=True
        )
        base = Path(path).parent
        tls_raw = mapping(top.get("tls_server_config"), "tls_server_config", _TLS_KEYS, optional=True)
        allowed_sans = _strings(tls_raw.get("client_allowed_sans"), "tls_server_config.client_allowed_sans")
        tls = _tls(tls_raw, base)
        if allowed_sans and (tls is None or tls.verify_mode != ssl.CERT_REQUIRED):
            raise ConfigError(
                "tls_server_config.client_allowed_sans: needs client_auth_type RequireAndVerifyClientCert"
            )
        http = mapping(top.get("http_server_config"), "http_server_config", {"http2", "headers"}, optional=True)
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
    files = tuple(str(base / tls_raw[key]) for key in ("cert_file", "key_file", "client_ca_file") if key in tls_raw)
    return WebConfig(tls=tls, allowed_sans=allowed_sans, users=users, headers=headers, files=files)


def file_state(paths: tuple[str, ...]) -> tuple[tuple[int, int, int, int] | None, ...]:
    """What tells a changed file from its old self cheaply: inode, size and modification time, per path
    (None where the file is missing). A renewal by rename (certbot, cert-manager's symlink swap) and one
    by rewriting in place both show."""
    states: list[tuple[int, int, int, int] | None] = []
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            states.append(None)
        else:
            states.append((stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns))
    return tuple(states)
