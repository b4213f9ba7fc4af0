"""The plugin author's test kit: real upstreams, real gateways, manifest builders.

Installed as a pytest plugin (entry point ``pytest11``), so its fixtures are available in
any test suite once ``meta-native-gateway`` is installed.
"""

from gateway_core.testing.certificates import IssuedCertificate, TestCertificateAuthority
from gateway_core.testing.manifests import (
    backend,
    endpoint_slice,
    ingress,
    path,
    plugin_annotations,
    pooled_service,
    routed_service,
    secret,
    service,
    tls_secret,
    write_manifests,
)
from gateway_core.testing.process import GatewayProcess, InProcessGateway, free_port, wait_until
from gateway_core.testing.redis import RedisNotInstalledError, RedisServer
from gateway_core.testing.upstream import ReceivedRequest, RecordingUpstream

__all__ = [
    "GatewayProcess",
    "InProcessGateway",
    "IssuedCertificate",
    "ReceivedRequest",
    "RecordingUpstream",
    "RedisNotInstalledError",
    "RedisServer",
    "TestCertificateAuthority",
    "backend",
    "endpoint_slice",
    "free_port",
    "ingress",
    "path",
    "plugin_annotations",
    "pooled_service",
    "routed_service",
    "secret",
    "service",
    "tls_secret",
    "wait_until",
    "write_manifests",
]
