"""The Kubernetes provider: routes from the Kubernetes API (``gateway run --kubernetes``).

The only package that imports the official ``kubernetes`` client (import-linter keeps it
so). :class:`KubernetesSource` is the route source; :mod:`.reflector` mirrors the API into
:mod:`.store`; :mod:`.client` configures the client; :mod:`.controller` writes Ingress
status and Events.
"""

from gateway_core.providers.kubernetes.source import KubernetesSource

__all__ = ["KubernetesSource"]
