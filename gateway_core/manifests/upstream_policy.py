"""How a route reaches its upstreams, as an Ingress's annotations configure it.

Balancing, timeouts, retries, outlier detection, canaries and mirrors are route
configuration, not plugins: they decide how the gateway calls upstreams. They are still set
the way plugins are, by ``meta-native.io/<name>`` annotations holding YAML or JSON mappings,
validated by the models here (unknown keys refused). An invalid annotation rejects the
Ingress like an invalid plugin config does, with the reason.

Defaults follow what ingress-nginx users expect: connect 5 s, read and write 60 s (the
``gateway.*_timeout`` settings), connect failures retried on another endpoint up to 3 tries.

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway_core.manifests.annotations import DOMAIN, load_annotation_yaml
from gateway_core.manifests.endpoint_key import endpoint_key

LOAD_BALANCE = DOMAIN + "load-balance"
TIMEOUTS = DOMAIN + "timeouts"
RETRIES = DOMAIN + "retries"
OUTLIER_DETECTION = DOMAIN + "outlier-detection"
CANARY = DOMAIN + "canary"
MIRROR = DOMAIN + "mirror"

UPSTREAM_ANNOTATIONS = frozenset({LOAD_BALANCE, TIMEOUTS, RETRIES, OUTLIER_DETECTION, CANARY, MIRROR})
"""The route-configuration annotations (every other ``meta-native.io/`` key is a plugin's)."""

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
"""An HTTP token (RFC 9110 §5.6.2): header and cookie names."""
_HASH_ON = re.compile(r"^(client_ip|path|(header|cookie):[!#$%&'*+.^_`|~0-9A-Za-z-]+)$")

_HEADER_TEXT = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
"""Text a header value can carry (RFC 9110 §5.5): no control characters, latin-1 only."""

Seconds = Annotated[float, Field(gt=0, le=86_400)]


def _cookie_name(value: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError("must be a cookie name (an HTTP token)")
    return value


CookieName = Annotated[str, AfterValidator(_cookie_name)]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AffinityCookie(_Config):
    """Cookie session affinity: a client keeps the endpoint that served it first."""

    name: CookieName = Field("mng-affinity", description="Name of the affinity cookie.")
    max_age: int | None = Field(
        None, ge=1, description="Cookie lifetime in seconds; unset = a session cookie (until the browser closes)."
    )
    path: str = Field("/", description="Cookie `Path`.")
    secure: bool = Field(False, description="Set the `Secure` attribute (HTTPS only).")
    same_site: Literal["Lax", "Strict", "None"] = Field("Lax", description="Cookie `SameSite` attribute.")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or any(ch in value for ch in ";\r\n\x00 "):
            raise ValueError("must be an absolute path without ';', spaces or control characters")
        return value

    @model_validator(mode="after")
    def _same_site_none_is_secure(self) -> AffinityCookie:
        if self.same_site == "None" and not self.secure:
            raise ValueError("same_site None needs secure: true (browsers drop such a cookie otherwise)")
        return self


class LoadBalancing(_Config):
    """`meta-native.io/load-balance`: how an endpoint is chosen for each try."""

    strategy: Literal["round-robin", "random", "least-request", "ewma", "hash"] = Field(
        "round-robin",
        description=(
            "`round-robin` (weighted), `random` (weighted), `least-request` (power of two choices on "
            "outstanding requests), `ewma` (power of two choices on peak-EWMA latency), `hash` "
            "(consistent hashing on `hash_on`)."
        ),
    )
    hash_on: str = Field(
        "client_ip",
        description="Key for `hash`: `client_ip`, `path`, `header:<name>` or `cookie:<name>`.",
    )
    weights: dict[str, int] = Field(
        default_factory=dict,
        description=(
            "Endpoint weights for `round-robin`, `random` and `hash`, keyed by `ip:port` or `ip`; "
            "unlisted endpoints weigh 1, weight 0 takes an endpoint out of rotation (if all weigh 0, "
            "all weigh 1). `least-request` and `ewma` accept only 0 and 1."
        ),
    )
    affinity: AffinityCookie | None = Field(
        None,
        description="Cookie session affinity on top of the strategy (which makes the first choice).",
    )

    @field_validator("hash_on")
    @classmethod
    def _hash_on(cls, value: str) -> str:
        if not _HASH_ON.match(value):
            raise ValueError("must be client_ip, path, header:<name> or cookie:<name>")
        return value

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: dict[str, int]) -> dict[str, int]:
        for key, weight in value.items():
            if not 0 <= weight <= 1000:
                raise ValueError(f"weight of {key!r} must be between 0 and 1000")
        return {endpoint_key(key): weight for key, weight in value.items()}

    @model_validator(mode="after")
    def _fits_strategy(self) -> LoadBalancing:
        if "hash_on" in self.model_fields_set and self.strategy != "hash":
            raise ValueError(f"hash_on applies to strategy hash only (strategy is {self.strategy})")
        if self.strategy in ("least-request", "ewma") and any(weight > 1 for weight in self.weights.values()):
            raise ValueError(
                f"{self.strategy} weighs endpoints by their measured load: weights may only be 0 (out) or 1"
            )
        return self


class TimeoutConfig(_Config):
    """`meta-native.io/timeouts`: per-route upstream timeouts in seconds (unset = the settings)."""

    connect: Seconds | None = Field(
        None, description="Seconds to open a connection (default `gateway.connect_timeout`)."
    )
    read: Seconds | None = Field(
        None, description="Seconds to the first response byte and between reads (default `gateway.proxy_timeout`)."
    )
    write: Seconds | None = Field(
        None, description="Seconds a request body write may stay blocked (default `gateway.send_timeout`)."
    )
    per_try: Seconds | None = Field(
        None, description="Seconds one try may take until the response head arrives; unset = no per-try limit."
    )


RetryOn = Literal["connect-failure", "reset", "timeout", "5xx", "gateway-error", "retriable-status"]


class RetryConfig(_Config):
    """`meta-native.io/retries`: when and how often a failed try is repeated on another endpoint."""

    attempts: int = Field(3, ge=1, le=10, description="Tries in all, the first included (1 = no retries).")
    on: tuple[RetryOn, ...] = Field(
        ("connect-failure", "reset"),
        description=(
            "What is retried: `connect-failure` (no connection, or a plugin refused the endpoint: nothing "
            "was sent), `reset` (closed before the response head), `timeout` (no head within `read` or "
            "`per_try`), `5xx` (any 5xx status, and every failure above), `gateway-error` (502, 503, 504, and "
            "every failure above), `retriable-status` (the `statuses`)."
        ),
    )
    statuses: tuple[Annotated[int, Field(ge=100, le=599)], ...] = Field(
        (), description="Response statuses retried when `on` includes `retriable-status`."
    )
    timeout: Seconds | None = Field(
        None, description="Seconds all tries together may take until a response head; unset = no overall limit."
    )
    budget_percent: float = Field(
        20.0,
        ge=0,
        le=100,
        description="Retries in flight may be at most this share of the route's requests in flight.",
    )
    min_retries: int = Field(
        3, ge=0, description="Retries in flight always allowed, whatever the budget (for low traffic)."
    )
    backoff_base: float = Field(
        0.025, ge=0, le=10, description="Seconds of jittered exponential backoff before retrying the same endpoint."
    )
    backoff_max: float = Field(0.25, ge=0, le=60, description="Longest backoff in seconds.")

    @model_validator(mode="before")
    @classmethod
    def _yaml_on_key(cls, data: Any) -> Any:
        """YAML 1.1 (PyYAML) reads a bare ``on:`` key as the boolean true: take it as ``on``."""
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if key is True else key): value for key, value in data.items()}
        return data

    @model_validator(mode="after")
    def _statuses_need_retriable_status(self) -> RetryConfig:
        if self.statuses and "retriable-status" not in self.on:
            raise ValueError("`statuses` are only retried when `on` includes `retriable-status`")
        if "retriable-status" in self.on and not self.statuses:
            raise ValueError("`retriable-status` needs the `statuses` to retry")
        return self


class OutlierDetection(_Config):
    """`meta-native.io/outlier-detection`: passive health; failing endpoints rest for a while."""

    enabled: bool = Field(True, description="Eject endpoints that fail in a row.")
    consecutive_failures: int = Field(
        5, ge=1, le=1000, description="Failures in a row (transport errors, 502/503/504) that eject an endpoint."
    )
    base_ejection_time: Seconds = Field(
        30.0, description="Seconds of the first ejection; each repeat ejection of the same endpoint doubles it."
    )
    max_ejection_time: Seconds = Field(300.0, description="Longest ejection in seconds.")
    max_ejected_percent: int = Field(
        50, ge=0, le=100, description="At most this share of a backend's endpoints is ejected at once (never all)."
    )

    @model_validator(mode="after")
    def _cap_above_base(self) -> OutlierDetection:
        if self.max_ejection_time < self.base_ejection_time:
            raise ValueError("`max_ejection_time` must be at least `base_ejection_time`")
        return self


class HeaderMatch(_Config):
    """A request header that sends a request to a canary."""

    name: str = Field(description="Header name.")
    values: tuple[str, ...] = Field(
        (),
        description=(
            "Values that match (exactly); empty = the header's presence. The value `never` is reserved: "
            "it keeps the request off this canary."
        ),
    )

    @field_validator("name")
    @classmethod
    def _token(cls, value: str) -> str:
        if not _TOKEN.match(value):
            raise ValueError("must be a header name (an HTTP token)")
        return value.lower()

    @field_validator("values")
    @classmethod
    def _values(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _match_values(value, allow_empty=True)


class CookieMatch(_Config):
    """A cookie that sends a request to a canary."""

    name: CookieName = Field(description="Cookie name.")
    values: tuple[str, ...] = Field(
        ("always",),
        description=(
            "Cookie values that match (exactly). The value `never` is reserved: it keeps the request off this canary."
        ),
    )

    @field_validator("values")
    @classmethod
    def _values(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _match_values(value, allow_empty=False)


def _match_values(values: tuple[str, ...], *, allow_empty: bool) -> tuple[str, ...]:
    """Check a canary match's values: possible header text, never the reserved ``never``."""
    if not values and not allow_empty:
        raise ValueError("must list at least one value")
    for value in values:
        if value == "never":
            raise ValueError("'never' is reserved (it keeps a request off the canary); it cannot match")
        if not _HEADER_TEXT.fullmatch(value):
            raise ValueError(f"{value!r} cannot be a header value (latin-1 text without control characters)")
    return values


class ServiceRef(_Config):
    """A Service port in the Ingress's namespace."""

    service: str = Field(min_length=1, max_length=63, description="Service name (same namespace as the Ingress).")
    port: int | str = Field(description="Service port, by number or name.")

    @field_validator("port")
    @classmethod
    def _port(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 65535:
            raise ValueError("must be between 1 and 65535")
        if isinstance(value, str) and not value:
            raise ValueError("must not be empty")
        return value


class CanaryConfig(ServiceRef):
    """One canary: a second Service for the same host and path."""

    weight: float = Field(0, ge=0, le=100, description="Percent of the other requests sent to this canary.")
    header: HeaderMatch | None = Field(None, description="Requests with this header go to the canary.")
    cookie: CookieMatch | None = Field(None, description="Requests with this cookie go to the canary.")

    @model_validator(mode="after")
    def _selects(self) -> CanaryConfig:
        if self.weight == 0 and self.header is None and self.cookie is None:
            raise ValueError("a canary needs a weight, a header or a cookie")
        return self


class MirrorConfig(ServiceRef):
    """One mirror: a copy of each request goes to this Service, its answer is discarded."""

    percent: float = Field(100, gt=0, le=100, description="Percent of requests mirrored.")
    max_body: int = Field(
        1 << 20,
        ge=0,
        description="Bytes of request body mirrored; a request with a longer body is not mirrored (0 = bodyless only).",
    )
    timeout: Seconds = Field(10.0, description="Seconds a mirrored request may take in all.")


class UpstreamPolicy(_Config):
    """Everything an Ingress's annotations say about reaching its upstreams."""

    load_balance: LoadBalancing = Field(default_factory=LoadBalancing)
    timeouts: TimeoutConfig = Field(default_factory=TimeoutConfig)
    retries: RetryConfig = Field(default_factory=RetryConfig)
    outlier_detection: OutlierDetection = Field(default_factory=OutlierDetection)
    canaries: tuple[CanaryConfig, ...] = ()
    mirrors: tuple[MirrorConfig, ...] = ()

    @field_validator("canaries")
    @classmethod
    def _weights_fit(cls, value: tuple[CanaryConfig, ...]) -> tuple[CanaryConfig, ...]:
        if sum(canary.weight for canary in value) > 100:
            raise ValueError("canary weights add up to more than 100")
        return value


DEFAULT_POLICY = UpstreamPolicy()


def parse_upstream_policy(annotations: Mapping[str, str]) -> tuple[UpstreamPolicy, tuple[str, ...]]:
    """The Ingress's upstream policy, and problems that reject it (the policy is then the default)."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, field_name, many in (
        (LOAD_BALANCE, "load_balance", False),
        (TIMEOUTS, "timeouts", False),
        (RETRIES, "retries", False),
        (OUTLIER_DETECTION, "outlier_detection", False),
        (CANARY, "canaries", True),
        (MIRROR, "mirrors", True),
    ):
        text = annotations.get(key)
        if text is None:
            continue
        try:
            values[field_name] = _parse(text, many=many)
        except (yaml.YAMLError, ValueError) as exc:
            problems.append(f"annotation {key}: invalid config: {' '.join(str(exc).split())}")
    if problems:
        return DEFAULT_POLICY, tuple(problems)
    if not values:
        return DEFAULT_POLICY, ()
    try:
        return UpstreamPolicy.model_validate(values), ()
    except ValidationError as exc:
        return DEFAULT_POLICY, tuple(_describe(exc))


def _parse(text: str, *, many: bool) -> Any:
    """A mapping; for ``many`` annotations a list of mappings (a single mapping is a list of one)."""
    value = load_annotation_yaml(text)
    if value is None:
        return [] if many else {}
    if many and isinstance(value, list):
        for item in value:
            if not isinstance(item, dict):
                raise ValueError(f"each entry must be a mapping, got {type(item).__name__}")
        return value
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping{' or a list of mappings' if many else ''}, got {type(value).__name__}")
    return [value] if many else value


_FIELD_ANNOTATIONS = {
    "load_balance": LOAD_BALANCE,
    "timeouts": TIMEOUTS,
    "retries": RETRIES,
    "outlier_detection": OUTLIER_DETECTION,
    "canaries": CANARY,
    "mirrors": MIRROR,
}


def _describe(exc: ValidationError) -> list[str]:
    """One problem per validation error, naming the annotation and the key inside it."""
    problems = []
    for error in exc.errors():
        location = [str(part) for part in error["loc"]]
        key = _FIELD_ANNOTATIONS.get(location[0], location[0]) if location else "annotation"
        inner = ".".join(location[1:])
        where = f"annotation {key}" + (f": {inner}" if inner else "")
        problems.append(f"{where}: {error['msg']}")
    return problems
