"""deploy/'s manifests agree with the gateway they run: args, config, probes, Services, the pod.

No cluster here, so each promise is checked against the real code: the container args are
parsed by the real ``gateway`` click command, the ConfigMap is loaded by ``load_settings``
with the Deployment's environment, the probes name paths the real admin app serves.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import httpx
import pytest
import yaml

from gateway_core.app import create_app
from gateway_core.settings import GatewaySettings, load_settings, parse_addr
from tests.deploy.deploy_support import (
    DEPLOY,
    ROOT,
    config_path,
    container,
    container_port,
    dockerfile_instruction,
    gateway_namespace,
    kustomization,
    manifests,
    of_kind,
    one,
    pod_environment,
    pod_spec,
    run_invocation,
)

# --- the manifests --------------------------------------------------------------------------


def test_every_manifest_parses_and_the_kustomization_lists_them_all() -> None:
    on_disk = {path.name for path in DEPLOY.glob("*.y*ml")} - {"kustomization.yaml"}
    assert sorted(kustomization()["resources"]) == sorted(on_disk)
    namespace = gateway_namespace()
    for obj in manifests():
        assert obj.get("apiVersion"), obj
        assert obj.get("kind"), obj
        assert obj["metadata"].get("name"), obj
        if obj["kind"] not in {"Namespace", "ClusterRole", "ClusterRoleBinding", "IngressClass"}:
            assert obj["metadata"].get("namespace") == namespace, f"{obj['kind']} {obj['metadata']['name']}"


def test_an_install_has_every_part() -> None:
    kinds = sorted(obj["kind"] for obj in manifests())
    assert kinds == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "ConfigMap",
            "Deployment",
            "Service",
            "Service",
            "PodDisruptionBudget",
            "IngressClass",
        ]
    )


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_renders_every_object() -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert sorted((o["kind"], o["metadata"]["name"]) for o in rendered) == sorted(
        (o["kind"], o["metadata"]["name"]) for o in manifests()
    )


def test_the_container_args_are_a_valid_gateway_run_with_the_kubernetes_provider() -> None:
    context = run_invocation()
    assert context.params.get("kubernetes") is True
    assert context.params["config"] == config_path()
    assert context.params.get("manifests") is None


def test_the_config_map_is_valid_settings_for_a_cluster(pod_settings: GatewaySettings) -> None:
    public = next(s for s in of_kind("Service") if s["spec"]["type"] == "LoadBalancer")
    assert pod_settings.kubernetes.publish_service == (
        f"{public['metadata']['namespace']}/{public['metadata']['name']}"
    )
    assert pod_settings.kubernetes.kubeconfig == ""  # in-cluster config
    assert pod_settings.manifests.dir == ""


async def test_probes_and_ports_are_what_the_gateway_serves(pod_settings: GatewaySettings, tmp_path: Path) -> None:
    assert container_port("http") == parse_addr(pod_settings.server.addr)[1]
    readiness, liveness = container()["readinessProbe"]["httpGet"], container()["livenessProbe"]["httpGet"]
    admin_port = parse_addr(pod_settings.metrics.addr)[1]
    assert container_port(readiness["port"]) == container_port(liveness["port"]) == admin_port

    gateway = create_app(load_settings(None, {"manifests": {"dir": str(tmp_path)}}))
    transport = httpx.ASGITransport(app=gateway.admin)  # the app behind metrics.addr
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
        alive = await client.get(liveness["path"])
        ready = await client.get(readiness["path"])
    assert (liveness["path"], alive.status_code) == ("/healthz", 200)
    assert (readiness["path"], ready.status_code) == ("/ready", 503)  # no table yet: no traffic


def test_services_select_the_pods_and_keep_the_admin_port_private() -> None:
    deployment = one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    admin = container_port("admin")
    for service in of_kind("Service"):
        assert service["spec"]["selector"].items() <= labels.items()
        targets = {container_port(port["targetPort"]) for port in service["spec"]["ports"]}
        if service["spec"].get("type", "ClusterIP") != "ClusterIP":
            assert admin not in targets, f"Service {service['metadata']['name']} exposes the admin port"


def test_the_ingress_class_is_the_one_the_gateway_answers_to(pod_settings: GatewaySettings) -> None:
    ingress_class = one("IngressClass")
    defaults = GatewaySettings().gateway
    assert ingress_class["spec"]["controller"] == defaults.controller_name == pod_settings.gateway.controller_name
    assert ingress_class["metadata"]["name"] == defaults.ingress_class == pod_settings.gateway.ingress_class


def test_the_pod_is_locked_down() -> None:
    pod = pod_spec()
    assert not any(pod.get(field) for field in ("hostNetwork", "hostPID", "hostIPC"))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert str(pod["securityContext"]["runAsUser"]) == dockerfile_instruction("USER")[-1].partition(":")[0]
    security = container()["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert not security.get("privileged")
    assert all("hostPath" not in volume for volume in pod["volumes"])
    resources = container()["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}


def test_tmp_is_writable_for_the_metrics_files_of_several_workers() -> None:
    # server._supervise puts PROMETHEUS_MULTIPROC_DIR under tempfile.gettempdir(): /tmp, or $TMPDIR.
    temp_dir = pod_environment().get("TMPDIR", "/tmp")
    mounts = {mount["mountPath"]: mount for mount in container()["volumeMounts"]}
    assert temp_dir in mounts
    assert not mounts[temp_dir].get("readOnly")
    volume = next(v for v in pod_spec()["volumes"] if v["name"] == mounts[temp_dir]["name"])
    assert "emptyDir" in volume


def test_the_pod_knows_its_name_and_namespace() -> None:
    env = {entry["name"]: entry for entry in container()["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


def test_shutdown_fits_in_the_grace_period(pod_settings: GatewaySettings) -> None:
    pre_stop = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    budget = int(pre_stop[1]) + pod_settings.server.graceful_timeout
    assert pod_spec()["terminationGracePeriodSeconds"] > budget


def test_two_replicas_roll_without_losing_capacity() -> None:
    spec = one("Deployment")["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert one("PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_the_image_is_tagged_with_the_project_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    image = container()["image"]
    assert image.rpartition(":")[2] == version
    readme = (DEPLOY / "README.md").read_text()
    assert f"docker build -f deploy/Dockerfile -t {image} ." in readme
    assert "kubectl apply -k deploy/" in readme
