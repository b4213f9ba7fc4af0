"""Where Kubernetes objects come from: a manifests directory, or the Kubernetes API.

Each provider is a :class:`RouteSource`; the gateway rebuilds its table from every snapshot
a source publishes. Only ``providers/kubernetes/`` may import the ``kubernetes`` client.
"""

from gateway_core.providers.base import Publish, RouteSource
from gateway_core.providers.file import ManifestDirectory

__all__ = ["ManifestDirectory", "Publish", "RouteSource"]
