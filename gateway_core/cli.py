"""The ``gateway`` command: ``run``, ``check``, ``plugins``, ``demo``.

The flags of ``gateway run`` are a contract (acceptance tests drive the gateway through
them): ``--manifests DIR --port P --admin-port P --https-port P --host H --workers N
--config FILE``, and
``--kubernetes [--kubeconfig PATH] [--namespace NS ...]`` for routes from the Kubernetes API.
Flags win over ``GATEWAY_*`` environment variables, which win over the config file.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from gateway_core.errors import GatewayError
from gateway_core.plugin_manager import get_plugin_manager, installed_version
from gateway_core.settings import GatewaySettings, load_settings, parse_addr


def _settings(
    config: str | None,
    overrides: dict[str, Any],
    *,
    host: str | None = None,
    port: int | None = None,
    admin_port: int | None = None,
    https_port: int | None = None,
) -> GatewaySettings:
    """Settings with flags applied; ``--host``/``--port`` change only their half of an address.

    ``--host`` is the host of both proxy listeners (plain and HTTPS); ``--https-port`` turns
    the HTTPS listener on even where the config file turned it off.
    """
    settings = load_settings(config, overrides)
    if host is not None or port is not None:
        current_host, current_port = parse_addr(settings.server.addr)
        addr_host = host if host is not None else current_host
        addr_host = f"[{addr_host}]" if ":" in addr_host else addr_host
        overrides.setdefault("server", {})["addr"] = f"{addr_host}:{port if port is not None else current_port}"
    https_addr = settings.server.https_addr
    if https_port is not None or (host is not None and https_addr):
        current_host, current_port = parse_addr(https_addr or settings.server.addr)
        addr_host = host if host is not None else current_host
        addr_host = f"[{addr_host}]" if ":" in addr_host else addr_host
        chosen = https_port if https_port is not None else current_port
        overrides.setdefault("server", {})["https_addr"] = f"{addr_host}:{chosen}"
    if admin_port is not None:
        admin_host, _ = parse_addr(settings.metrics.addr)
        admin_host = f"[{admin_host}]" if ":" in admin_host else admin_host
        overrides.setdefault("metrics", {})["addr"] = f"{admin_host}:{admin_port}"
    return load_settings(config, overrides)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


class PluginCommands(click.Group):
    """The built-in commands plus those plugins add through ``gateway_cli_commands``.

    Plugins are loaded only when a name is not a built-in command (or for ``--help``), so
    ``gateway run`` never pays for it and a broken plugin cannot break the built-ins.
    """

    def _plugin_commands(self) -> dict[str, click.Command]:
        try:
            pm = get_plugin_manager()
        except GatewayError as exc:
            click.echo(f"warning: plugin commands unavailable: {exc}", err=True)
            return {}
        found: dict[str, click.Command] = {}
        for commands in pm.hook.gateway_cli_commands():
            for command in commands or ():
                if command.name and command.name not in self.commands:
                    found[command.name] = command
        return found

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugin_commands()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None:
            command = self._plugin_commands().get(cmd_name)
        return command


@click.group(cls=PluginCommands)
@click.version_option(installed_version(), prog_name="gateway")
def main() -> None:
    """Meta-Native Gateway: a plugin-centric API gateway for Kubernetes Ingress."""


@main.command()
@click.option("--manifests", "manifests", type=click.Path(file_okay=False), help="Directory of Kubernetes manifests.")
@click.option("--kubernetes", "kubernetes", is_flag=True, default=None, help="Watch the Kubernetes API for routes.")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False),
    metavar="PATH",
    help="Kubeconfig for --kubernetes (default: the in-cluster service account).",
)
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    metavar="NS",
    help="Namespace to watch with --kubernetes (repeatable; default: all namespaces).",
)
@click.option("--port", type=click.IntRange(0, 65535), help="Proxy port (default 8080).")
@click.option("--admin-port", type=click.IntRange(0, 65535), help="Admin port: health, metrics, routes (default 9090).")
@click.option("--https-port", type=click.IntRange(0, 65535), help="HTTPS listener port (default 8443).")
@click.option("--host", help="Proxy listen address, plain and HTTPS (default 0.0.0.0).")
@click.option("--workers", type=click.IntRange(1, 256), help="Worker processes (default 1).")
@click.option("--config", "config", type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--ingress-class", help="IngressClass name to serve (default meta-native).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="Log level.")
def run(
    manifests: str | None,
    kubernetes: bool | None,
    kubeconfig: str | None,
    namespaces: tuple[str, ...],
    port: int | None,
    admin_port: int | None,
    https_port: int | None,
    host: str | None,
    workers: int | None,
    config: str | None,
    ingress_class: str | None,
    log_level: str | None,
) -> None:
    """Serve traffic until SIGTERM or SIGINT, then shut down gracefully."""
    from gateway_core import server
    from gateway_core.app import create_app

    overrides: dict[str, Any] = {}
    if manifests is not None:
        overrides["manifests"] = {"dir": manifests}
    kube: dict[str, Any] = {}
    if kubernetes:
        kube["enabled"] = True
    if kubeconfig is not None:
        kube["kubeconfig"] = kubeconfig
    if namespaces:
        kube["namespaces"] = list(namespaces)
    if kube:
        overrides["kubernetes"] = kube
    if workers is not None:
        overrides["server"] = {"workers": workers}
    if ingress_class is not None:
        overrides["gateway"] = {"ingress_class": ingress_class}
    if log_level is not None:
        overrides["log"] = {"level": log_level}
    try:
        settings = _settings(config, overrides, host=host, port=port, admin_port=admin_port, https_port=https_port)
        create_app(settings)  # fail fast on plugin or source errors, before binding ports
    except GatewayError as exc:
        _fail(str(exc))
    try:
        code = server.run(settings)
    except OSError as exc:
        _fail(str(exc.strerror or exc))
    sys.exit(code)


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--config", "config", type=click.Path(dir_okay=False), help="YAML config file (plugins, class).")
@click.option("--ingress-class", help="IngressClass name to serve (default meta-native).")
@click.option("--strict", is_flag=True, help="Treat warnings (missing Services, conflicts) as errors.")
def check(directory: str, config: str | None, ingress_class: str | None, strict: bool) -> None:
    """Validate a manifests directory and its annotations offline; exit 1 on any error."""
    from gateway_core.app import build_options
    from gateway_core.plugin_manager import collect_plugin_specs
    from gateway_core.providers.file import ManifestDirectory
    from gateway_core.routing.build import build_table

    overrides: dict[str, Any] = {"gateway": {"ingress_class": ingress_class}} if ingress_class else {}
    try:
        settings = load_settings(config, overrides)
        pm = get_plugin_manager(blocked=settings.plugins.disabled)
        specs = collect_plugin_specs(pm, disabled=settings.plugins.disabled)
        snapshot = ManifestDirectory(directory, default_namespace=settings.kubernetes.namespace).load()
        table = build_table(snapshot, build_options(settings, specs, pm))
    except GatewayError as exc:
        _fail(str(exc))
    errors: list[str] = [str(problem) for problem in table.problems]
    for rejected in table.rejected.values():
        errors.extend(f"Ingress {rejected.ingress}: {reason}" for reason in rejected.reasons)
    warnings: list[str] = []
    for route in table.routes:
        problem = route.spec.backend.problem
        if problem and route.unavailable is None:
            warnings.append(f"Ingress {route.info.ingress_ref} ({route.info.host}{route.info.path}): {problem}")
    warnings.extend(
        f"route {conflict.route} is shadowed by {conflict.winner} (older Ingress wins)" for conflict in table.conflicts
    )
    warnings.extend(f"certificate refused: {problem}" for problem in table.certificates.problems)
    for line in errors:
        click.echo(f"error: {line}")
    for line in warnings:
        click.echo(f"warning: {line}")
    for line in table.ignored:
        click.echo(f"ignored: Ingress {line}: another ingress class")
    ingresses = len({route.info.ingress_ref for route in table.routes} | set(table.rejected))
    click.echo(f"{ingresses} Ingresses, {len(table.routes)} routes: {len(errors)} errors, {len(warnings)} warnings")
    sys.exit(1 if errors or (strict and warnings) else 0)


@main.command()
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Proxy port.")
@click.option("--admin-port", type=click.IntRange(1, 65535), default=9090, show_default=True, help="Admin port.")
def demo(port: int, admin_port: int) -> None:
    """Start demo upstreams and a gateway on the quickstart manifests; print curl commands."""
    from gateway_core import demo as demo_module
    from gateway_core.app import create_app
    from gateway_core.logs import configure_logging
    from gateway_core.server import GatewayServer, bind_socket, run_async

    try:
        settings = load_settings(
            None,
            {
                "manifests": {"dir": str(demo_module.quickstart_dir())},
                "server": {"addr": f"127.0.0.1:{port}"},
                "metrics": {"addr": f"127.0.0.1:{admin_port}"},
                "log": {"format": "text", "level": "warning"},
            },
        )
        gateway = create_app(settings)
        proxy_sock = bind_socket(settings.server.addr)
        admin_sock = bind_socket(settings.metrics.addr)
    except (GatewayError, OSError) as exc:
        _fail(str(getattr(exc, "strerror", None) or exc))
    configure_logging(settings.log)
    click.echo(demo_module.curl_examples(port, admin_port))
    server = GatewayServer(gateway, proxy_sock, admin_sock, extra=demo_module.upstream_configs())
    run_async(server.serve())


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(as_json: bool) -> None:
    """List installed plugins."""
    from gateway_core.plugin_manager import collect_plugin_specs, plugin_distributions

    try:
        pm = get_plugin_manager()
        specs = collect_plugin_specs(pm)
    except GatewayError as exc:
        _fail(str(exc))
    rows = sorted(specs.values(), key=lambda spec: (-spec.priority, spec.name))
    if as_json:
        click.echo(
            json.dumps(
                [
                    {"name": s.name, "version": s.version, "priority": s.priority, "description": s.description}
                    for s in rows
                ],
                indent=2,
            )
        )
        return
    if not rows:
        click.echo("no plugins installed")
    for spec in rows:
        click.echo(f"{spec.name:<24} {spec.version:<10} priority {spec.priority:<6} {spec.description}")
    distributions = plugin_distributions(pm)
    if distributions:
        click.echo("\nfrom packages: " + ", ".join(sorted(set(distributions.values()))))


if __name__ == "__main__":  # pragma: no cover
    main()
