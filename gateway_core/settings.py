"""GatewaySettings: the ``--config`` YAML file, ``GATEWAY_*`` environment variables, CLI flags.

Precedence, highest first: command-line flags, environment variables
(``GATEWAY_SERVER__ADDR=:8081``, sections split by ``__``), the YAML file, defaults.
The file keeps the sections and keys of the original design (``server``, ``kubernetes``,
``gateway``, ``metrics``, ``log``) with their meaning, and adds ``manifests``,
``plugins`` and ``tls``. Times are seconds, sizes MB. An unknown key or a bad value is a
:class:`ConfigError` naming the key.
"""

from __future__ import annotations

import contextvars
import ipaddress
import ssl
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway_core.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def parse_addr(addr: str, *, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """``":8080"``, ``"127.0.0.1:8080"`` or ``"[::1]:8080"`` to ``(host, port)``."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{addr!r} is not host:port (for example ':8080' or '127.0.0.1:8080')")
    host = host.strip("[]") or default_host
    return host, int(port)


def _check_addr(value: str) -> str:
    parse_addr(value)
    return value


class ServerSettings(_Section):
    """The proxy listener and how it treats clients."""

    addr: str = Field(":8080", description="Proxy listener address, host:port (':8080' = all interfaces).")
    https_addr: str = Field(
        ":8443", description="HTTPS listener address, host:port (same proxy, TLS terminated); empty = none."
    )
    read_timeout: float = Field(
        30,
        gt=0,
        description="Seconds a client may take to send its request head, or pause within its body (408 after).",
    )
    write_timeout: float = Field(
        30, gt=0, description="Seconds a write to a client may stay blocked before the connection is dropped."
    )
    idle_timeout: float = Field(60, gt=0, description="Seconds an idle keep-alive client connection is kept open.")
    workers: int = Field(1, ge=1, le=256, description="Worker processes sharing the listeners.")
    graceful_timeout: float = Field(30, ge=0, description="Seconds in-flight requests get to finish on shutdown.")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="CIDRs of proxies whose X-Forwarded-* headers are trusted (e.g. a cloud load balancer).",
    )

    _addr = field_validator("addr")(_check_addr)

    @field_validator("https_addr")
    @classmethod
    def _check_https_addr(cls, value: str) -> str:
        return _check_addr(value) if value else value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value


class KubernetesSettings(_Section):
    """The Kubernetes provider (``gateway run --kubernetes``), and the default namespace."""

    enabled: bool = Field(False, description="Read objects from the Kubernetes API (`--kubernetes`).")
    kubeconfig: str = Field("", description="Path to a kubeconfig; empty = in-cluster config.")
    master_url: str = Field("", description="API server URL overriding the kubeconfig's.")
    namespace: str = Field("default", description="Namespace of manifests that name none.")
    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to watch (`--namespace`, repeatable); empty = the whole cluster."
    )
    debounce: float = Field(
        0.1, ge=0, le=10, description="Seconds of quiet after a change before the route table is rebuilt."
    )
    watch_timeout: float = Field(
        300, gt=0, description="Seconds a watch request may stay open before it is renewed (server-side timeout)."
    )
    backoff_max: float = Field(30, gt=0, description="Longest wait, in seconds, between reconnection attempts.")
    leader_election: bool = Field(
        True, description="Elect one replica (a coordination.k8s.io Lease) to write Ingress status and Events."
    )
    lease_name: str = Field("meta-native-gateway", description="Name of the leader-election Lease.")
    lease_namespace: str = Field(
        "", description="Namespace of the Lease; empty = the pod's namespace (POD_NAMESPACE), else `default`."
    )
    lease_duration: float = Field(15, gt=0, description="Seconds a leader's Lease is valid without renewal.")
    renew_deadline: float = Field(
        10, gt=0, description="Seconds the leader keeps trying to renew before it steps down."
    )
    retry_period: float = Field(2, gt=0, description="Seconds between leader-election attempts and renewals.")
    update_status: bool = Field(True, description="Write `.status.loadBalancer.ingress` of the Ingresses served.")
    publish_service: str = Field(
        "", description="`namespace/name` of the Service whose address is written into Ingress status."
    )
    publish_status_address: list[str] = Field(
        default_factory=list, description="Addresses (IPs or host names) written into Ingress status instead."
    )
    update_status_on_shutdown: bool = Field(
        True, description="Clear the status of the Ingresses served when the leader shuts down."
    )
    events: bool = Field(True, description="Record a Warning Event on an Ingress that is rejected, and why.")


class UpstreamSettings(_Section):
    """How the gateway reaches upstreams (the ``gateway`` section)."""

    proxy_timeout: float = Field(
        60, gt=0, description="Upstream read timeout: seconds to the first response byte and between reads."
    )
    connect_timeout: float = Field(5, gt=0, description="Seconds to open a connection to an upstream.")
    send_timeout: float = Field(
        60, gt=0, description="Seconds a write of the request body to an upstream may stay blocked."
    )
    enable_keep_alive: bool = Field(True, description="Reuse upstream connections.")
    max_idle_conns: int = Field(100, ge=0, description="Idle upstream connections kept per worker, over all endpoints.")
    idle_conn_timeout: float = Field(90, gt=0, description="Seconds an idle upstream connection is kept.")
    transport: Literal["pool", "httpx"] = Field(
        "pool", description="Upstream client: 'pool' (fast HTTP/1.1) or 'httpx'."
    )
    preserve_host: bool = Field(True, description="Forward the client's Host header (else the upstream address).")
    websocket_idle_timeout: float = Field(
        3600, gt=0, description="Seconds a proxied WebSocket may carry no message either way before it is closed."
    )
    websocket_max_message_size: int = Field(
        16, ge=1, le=1024, description="MB: the largest WebSocket message relayed (a larger one closes with 1009)."
    )
    ingress_class: str = Field("meta-native", description="The IngressClass name this gateway serves.")
    controller_name: str = Field(
        "meta-native.io/gateway", description="IngressClass spec.controller this gateway answers to."
    )
    watch_ingress_without_class: bool = Field(True, description="Serve Ingresses that name no class.")


ONE_YEAR = 31_536_000
"""Seconds in a year: the HSTS ``max-age`` default (what the HSTS preload list asks for)."""


class TlsSettings(_Section):
    """TLS termination on the HTTPS listener: the default certificate, versions, redirect, HSTS."""

    default_cert_file: str = Field(
        "",
        description="PEM certificate (chain) for hosts without one of their own; empty = a generated self-signed one.",
    )
    default_key_file: str = Field("", description="PEM private key of `default_cert_file`.")
    min_version: Literal["TLSv1.2", "TLSv1.3"] = Field("TLSv1.2", description="Oldest TLS version accepted.")
    ciphers: str = Field(
        "ECDHE+AESGCM:ECDHE+CHACHA20",
        min_length=1,
        description="OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's, all modern).",
    )
    ssl_redirect: bool = Field(
        True,
        description="Redirect plain-HTTP requests for hosts that have a certificate to HTTPS; an Ingress can "
        "switch it with the `meta-native.io/ssl-redirect` annotation.",
    )
    redirect_code: Literal[301, 302, 307, 308] = Field(308, description="Status of the HTTP to HTTPS redirect.")
    redirect_port: int = Field(
        443, ge=1, le=65535, description="Port of the `https://` URL redirected to; left out when 443."
    )
    hsts: bool = Field(True, description="Put `Strict-Transport-Security` on responses to HTTPS requests.")
    hsts_max_age: int = Field(ONE_YEAR, ge=0, le=2**31 - 1, description="HSTS `max-age`, in seconds.")
    hsts_include_subdomains: bool = Field(False, description="Add `includeSubDomains` to HSTS.")
    hsts_preload: bool = Field(
        False, description="Add `preload` to HSTS (needs `hsts_include_subdomains` and a max-age of a year or more)."
    )

    @field_validator("ciphers")
    @classmethod
    def _check_ciphers(cls, value: str) -> str:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(value)
        except ssl.SSLError:
            raise ValueError(f"no cipher OpenSSL knows matches {value!r}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TlsSettings:
        if bool(self.default_cert_file) != bool(self.default_key_file):
            raise ValueError("default_cert_file and default_key_file go together: set both or neither")
        if self.hsts_preload and not (self.hsts_include_subdomains and self.hsts_max_age >= ONE_YEAR):
            raise ValueError("hsts_preload needs hsts_include_subdomains: true and hsts_max_age >= 31536000")
        return self


class MetricsSettings(_Section):
    """The admin listener: health, readiness, metrics, routes, plugins."""

    enabled: bool = Field(True, description="Expose /metrics on the admin listener.")
    addr: str = Field(":9090", description="Admin listener address, host:port.")

    _addr = field_validator("addr")(_check_addr)


class LogSettings(_Section):
    """Logging."""

    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Minimum level logged.")
    format: Literal["json", "text"] = Field("json", description="One JSON object per line, or plain text.")
    file_path: str = Field("", description="Log file; empty = standard error.")
    max_size: int = Field(100, ge=1, description="MB at which the log file is rotated.")
    max_backups: int = Field(3, ge=0, description="Rotated files kept.")
    max_age: int = Field(7, ge=0, description="Days rotated files are kept (0 = no age limit).")


class ManifestsSettings(_Section):
    """The manifests-directory provider."""

    dir: str = Field("", description="Directory of Kubernetes manifests (*.yaml, *.yml, *.json), read recursively.")
    debounce: float = Field(0.1, ge=0, description="Seconds of quiet after a change before the table is rebuilt.")
    force_polling: bool = Field(False, description="Poll instead of inotify (for file systems without events).")


class PluginsSettings(_Section):
    """Plugins bound everywhere, their default configs, and plugins switched off."""

    bound: list[str] = Field(default_factory=list, alias="global", description="Plugins bound to every route.")
    config: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Default config per plugin, used whole when an Ingress gives none."
    )
    disabled: list[str] = Field(default_factory=list, description="Plugins (or plugin distributions) not loaded.")


_yaml_source: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("gateway_yaml_source")


class _YamlSource(PydanticBaseSettingsSource):
    """The YAML file's content, below environment variables and flags."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return _yaml_source.get({})


class GatewaySettings(BaseSettings):
    """Every setting of the gateway, by section."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_nested_delimiter="__", extra="forbid")

    server: ServerSettings = Field(default_factory=ServerSettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    gateway: UpstreamSettings = Field(default_factory=UpstreamSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    tls: TlsSettings = Field(default_factory=TlsSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    manifests: ManifestsSettings = Field(default_factory=ManifestsSettings)
    plugins: PluginsSettings = Field(default_factory=PluginsSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))


def load_settings(config_file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> GatewaySettings:
    """Settings from the YAML file, the environment and ``overrides`` (flags), in that order.

    Raises :class:`ConfigError` naming the file and every bad key.
    """
    data: dict[str, Any] = {}
    source = "settings"
    if config_file:
        source = str(config_file)
        try:
            text = Path(config_file).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {source}: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: invalid YAML: {' '.join(str(exc).split())}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{source}: the top level must be a mapping of sections")
        data = loaded or {}
    token = _yaml_source.set(data)
    try:
        return GatewaySettings(**(overrides or {}))
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            key = ".".join(str(part) for part in error["loc"])
            problems.append(f"{key}: {error['msg']}")
        raise ConfigError(f"{source}: invalid settings: " + "; ".join(problems)) from None
    finally:
        _yaml_source.reset(token)
