"""The deploy/ manifests and the image agree with the gateway they run.

No cluster and no Docker daemon here, so each promise is checked against the real code
instead: the container args are parsed by the real ``gateway`` click command, the ConfigMap
is loaded by ``load_settings`` with the Deployment's environment, the probes name paths the
real admin app serves, the RBAC grants are compared verb by verb with the least-privilege
list, and the wheels are built from exactly the files the Dockerfile copies (after
``.dockerignore``) — so a plugin, a package-data folder or a verb that drifts fails here.
"""

from __future__ import annotations

import ast
import inspect
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import kubernetes.client
import pytest
import yaml

from gateway_core.app import create_app
from gateway_core.cli import main
from gateway_core.settings import GatewaySettings, load_settings, parse_addr

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
PROVIDER = ROOT / "gateway_core" / "providers" / "kubernetes"
POD_NAME = "meta-native-gateway-5d8f7c9b6-x2x9q"

# Least privilege: exactly what the provider's code calls (checked below), one
# (role kind, API group, resource, verb, resource name) per grant; "" as the resource name
# means any object of that kind, "LEASE" the Lease named in the settings.
GRANTS = {
    ("ClusterRole", "", "services", "get", ""),
    ("ClusterRole", "", "services", "list", ""),
    ("ClusterRole", "", "services", "watch", ""),
    ("ClusterRole", "", "secrets", "list", ""),
    ("ClusterRole", "", "secrets", "watch", ""),
    ("ClusterRole", "discovery.k8s.io", "endpointslices", "list", ""),
    ("ClusterRole", "discovery.k8s.io", "endpointslices", "watch", ""),
    ("ClusterRole", "networking.k8s.io", "ingressclasses", "list", ""),
    ("ClusterRole", "networking.k8s.io", "ingressclasses", "watch", ""),
    ("ClusterRole", "networking.k8s.io", "ingresses", "get", ""),
    ("ClusterRole", "networking.k8s.io", "ingresses", "list", ""),
    ("ClusterRole", "networking.k8s.io", "ingresses", "watch", ""),
    ("ClusterRole", "networking.k8s.io", "ingresses/status", "patch", ""),
    ("ClusterRole", "", "events", "create", ""),
    ("ClusterRole", "", "events", "patch", ""),
    ("Role", "coordination.k8s.io", "leases", "create", ""),
    ("Role", "coordination.k8s.io", "leases", "get", "LEASE"),
    ("Role", "coordination.k8s.io", "leases", "patch", "LEASE"),
}


# --- reading the manifests ------------------------------------------------------------------


def kustomization() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert isinstance(data, dict)
    return data


def manifests() -> list[dict[str, Any]]:
    """Every object of every file the kustomization lists, in order."""
    objects: list[dict[str, Any]] = []
    for name in kustomization()["resources"]:
        objects.extend(doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc is not None)
    return objects


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [obj for obj in manifests() if obj["kind"] == kind]


def one(kind: str) -> dict[str, Any]:
    found = of_kind(kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = one("Deployment")["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    containers = pod_spec()["containers"]
    assert len(containers) == 1
    found: dict[str, Any] = containers[0]
    return found


def gateway_namespace() -> str:
    name: str = one("Namespace")["metadata"]["name"]
    return name


def container_port(port: int | str) -> int:
    """A port by number or by the name a probe or Service uses."""
    if isinstance(port, int):
        return port
    ports = {entry["name"]: entry["containerPort"] for entry in container()["ports"]}
    assert port in ports, f"no container port named {port!r}"
    return int(ports[port])


def pod_environment() -> dict[str, str]:
    """The container's environment as the kubelet gives it: downward API and $(VAR) refs resolved."""
    field_values = {"metadata.name": POD_NAME, "metadata.namespace": gateway_namespace()}
    environment: dict[str, str] = {}
    for entry in container().get("env", []):
        if "valueFrom" in entry:
            environment[entry["name"]] = field_values[entry["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            environment[entry["name"]] = re.sub(
                r"\$\((\w+)\)", lambda match: environment[match.group(1)], entry["value"]
            )
    return environment


def config_path() -> str:
    args = container()["args"]
    return str(args[args.index("--config") + 1])


def config_text() -> str:
    """The ConfigMap entry the container's ``--config`` path points to, through its mount."""
    path = Path(config_path())
    mounts = {mount["mountPath"]: mount["name"] for mount in container()["volumeMounts"]}
    assert str(path.parent) in mounts, f"{path} is not in a mounted volume"
    volume = next(v for v in pod_spec()["volumes"] if v["name"] == mounts[str(path.parent)])
    config_map = one("ConfigMap")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert path.name in config_map["data"], f"the ConfigMap has no key {path.name}"
    text: str = config_map["data"][path.name]
    return text


@pytest.fixture
def pod_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GatewaySettings:
    """The settings the gateway in the pod starts with: its config file and environment."""
    config = tmp_path / "config.yaml"
    config.write_text(config_text())
    for name, value in pod_environment().items():
        monkeypatch.setenv(name, value)
    return load_settings(config)


def run_invocation() -> click.Context:
    """The container's args parsed by the real ``gateway run`` command (the image's entrypoint)."""
    args = list(container()["args"])
    assert "command" not in container(), "the container must use the image's entrypoint"
    assert dockerfile_instruction("ENTRYPOINT") == ['["gateway"]']
    assert isinstance(main, click.Group)
    assert args[0] == "run"
    parent = click.Context(main, info_name="gateway")
    return main.commands["run"].make_context("run", args[1:], parent=parent)


# --- reading the Dockerfile -----------------------------------------------------------------


def dockerfile_lines() -> list[str]:
    """Instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def dockerfile_instruction(name: str, *, stage: int | None = None) -> list[str]:
    """The arguments of every ``name`` instruction (in one stage, counted from 0, if given)."""
    found: list[str] = []
    current = -1
    for line in dockerfile_lines():
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            current += 1
        if word.upper() == name and (stage is None or stage == current):
            found.append(rest.strip())
    return found


def dockerignore_patterns() -> list[re.Pattern[str]]:
    """``.dockerignore`` as regular expressions (Go ``filepath.Match`` plus ``**``)."""
    patterns = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), "exceptions are not modelled by this test; extend it"
        regex = re.escape(line.strip("/"))
        regex = regex.replace(r"\*\*/", "(?:[^/]+/)*").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        patterns.append(re.compile(regex))
    return patterns


def build_context() -> Iterator[Path]:
    """Files Docker sends as the build context: the repository minus ``.dockerignore``."""
    patterns = dockerignore_patterns()
    for path in ROOT.rglob("*"):
        if not path.is_file():
            continue
        relative = path.relative_to(ROOT)
        prefixes = ["/".join(relative.parts[: end + 1]) for end in range(len(relative.parts))]
        if not any(pattern.fullmatch(prefix) for pattern in patterns for prefix in prefixes):
            yield relative


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


def test_rbac_grants_exactly_the_least_privilege_list(pod_settings: GatewaySettings) -> None:
    lease = pod_settings.kubernetes.lease_name
    granted = set()
    for role in [*of_kind("ClusterRole"), *of_kind("Role")]:
        for rule in role["rules"]:
            names = rule.get("resourceNames") or [""]
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in names:
                            granted.add((role["kind"], group, resource, verb, "LEASE" if name == lease else name))
    assert sorted(granted - GRANTS) == [], "grants beyond least privilege"
    assert sorted(GRANTS - granted) == [], "grants the gateway needs are missing"


def api_classes() -> dict[str, type]:
    """The client's API classes (``CoreV1Api``, ``NetworkingV1Api``, ...) by name."""
    names = [name for name in dir(kubernetes.client) if re.fullmatch(r"\w+V\d\w*Api", name)]
    return {name: getattr(kubernetes.client, name) for name in names}


def rbac_of(api: type, method: str) -> set[tuple[str, str, str]]:
    """(API group, resource, verbs) a client method needs, from the request it builds."""
    source = inspect.getsource(getattr(api, f"_{method}_serialize"))
    http = re.search(r"method='(\w+)'", source)
    path = re.search(r"resource_path='([^']+)'", source)
    assert http is not None, method
    assert path is not None, method
    parts = path.group(1).strip("/").split("/")
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    if rest[0] == "namespaces" and len(rest) > 2:
        rest = rest[2:]
    resource = rest[0] + ("/" + rest[2] if len(rest) > 2 else "")
    named = len(rest) > 1
    verbs = {
        "GET": {"get"} if named else {"list", "watch"},  # a list function also serves Watch().stream
        "POST": {"create"},
        "PUT": {"update"},
        "PATCH": {"patch"},
        "DELETE": {"delete"} if named else {"deletecollection"},
    }[http.group(1)]
    return {(group, resource, verb) for verb in verbs}


def provider_api_calls() -> set[tuple[str, str, str]]:
    """Every (group, resource, verb) the Kubernetes provider's code can ask of the API server.

    Each module's names (attributes and string constants, so ``getattr`` tables count too)
    are matched against the methods of the API classes that module uses.
    """
    classes = api_classes()
    needed: set[tuple[str, str, str]] = set()
    for module in sorted(PROVIDER.glob("*.py")):
        tree = ast.parse(module.read_text())
        names = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        names |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        names |= {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        names |= {
            node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
        }
        assert not names & {"call_api", "param_serialize", "DynamicClient"}, (
            f"{module.name} calls the API without a typed method; this test cannot see which"
        )
        used = [classes[name] for name in sorted(names & set(classes))]
        for name in sorted(names):
            owners = [api for api in classes.values() if hasattr(api, f"_{name}_serialize")]
            if not owners:
                continue
            local = [api for api in used if api in owners]
            assert local, f"{module.name} uses {name} without naming its API class"
            for api in local:
                needed |= rbac_of(api, name)
    return needed


def test_rbac_grants_what_the_provider_calls_and_nothing_else() -> None:
    needed = provider_api_calls()
    assert needed, "no Kubernetes API call found in the provider"
    granted = {(group, resource, verb) for _, group, resource, verb, _ in GRANTS}
    assert sorted(needed - granted) == [], "calls the RBAC does not allow: they fail with 403 in a cluster"
    assert sorted(granted - needed) == [], "grants no code uses: drop them"


def test_the_guide_explains_every_grant() -> None:
    text = (ROOT / "docs" / "guides" / "kubernetes.md").read_text()
    table = text[text.index("| API group | Resource | Verbs | Why |") :].split("\n\n")[0]
    explained = set()
    for row in table.splitlines()[2:]:
        group, resource, verbs = (cell.strip() for cell in row.strip("|").split("|")[:3])
        group = "" if group.startswith('`""`') else group.strip("`")
        name = re.findall(r"`([^`]+)`", resource)
        explained |= {(group, name[0], verb.strip()) for verb in verbs.split(",")}
    assert explained == {(group, resource, verb) for _, group, resource, verb, _ in GRANTS}


def test_rbac_never_grants_wildcards_deletes_or_secret_writes() -> None:
    for role in [*of_kind("ClusterRole"), *of_kind("Role")]:
        assert "aggregationRule" not in role
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{role['metadata']['name']}: '*' in {field}"
            assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(rule["verbs"])
            assert "nonResourceURLs" not in rule
            if "secrets" in rule["resources"]:
                assert set(rule["verbs"]) <= {"get", "list", "watch"}


def test_the_lease_role_is_in_the_namespace_the_gateway_elects_in(pod_settings: GatewaySettings) -> None:
    lease_namespace = pod_settings.kubernetes.lease_namespace or pod_environment()["POD_NAMESPACE"]
    assert one("Role")["metadata"]["namespace"] == lease_namespace


def test_the_roles_are_bound_to_the_deployments_service_account() -> None:
    account = one("ServiceAccount")["metadata"]
    assert pod_spec()["serviceAccountName"] == account["name"]
    for binding_kind, role_kind in [("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")]:
        binding = one(binding_kind)
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role_kind,
            "name": one(role_kind)["metadata"]["name"],
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
        ]


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


# --- the image ------------------------------------------------------------------------------


def plugin_distributions() -> dict[str, str]:
    """Folder under plugins/ -> its distribution name."""
    found = {}
    for folder in sorted(path for path in (ROOT / "plugins").iterdir() if path.is_dir()):
        pyproject = folder / "pyproject.toml"
        assert pyproject.is_file(), f"plugins/{folder.name} is not a distribution (no pyproject.toml)"
        found[folder.name] = tomllib.loads(pyproject.read_text())["project"]["name"]
    return found


def wheel_targets() -> list[str]:
    """The projects ``pip wheel`` builds in the Dockerfile's first stage."""
    runs = [run for run in dockerfile_instruction("RUN", stage=0) if "pip wheel" in run]
    assert len(runs) == 1, "the first stage builds the wheels with one `pip wheel`"
    words = shlex.split(runs[0])
    words = words[words.index("wheel") + 1 :]
    targets = []
    while words:
        word = words.pop(0)
        if word in {"--wheel-dir", "-w"}:
            words.pop(0)
        elif not word.startswith("-"):
            targets.append(word)
    return targets


def test_the_dockerfile_installs_the_gateway_and_every_plugin() -> None:
    targets = wheel_targets()
    assert "." in targets
    expanded = {path.name for target in targets if target != "." for path in ROOT.glob(target.rstrip("/"))}
    assert expanded == set(plugin_distributions()), "the Dockerfile misses (or adds) folders under plugins/"
    runtime_installs = [run for run in dockerfile_instruction("RUN", stage=1) if "pip install" in run]
    assert len(runtime_installs) == 1
    assert "/wheels/*.whl" in runtime_installs[0]


def test_the_image_is_slim_non_root_and_exposes_both_listeners() -> None:
    assert dockerfile_instruction("ARG")[0] == "PYTHON_IMAGE=python:3.11-slim"
    assert dockerfile_instruction("FROM") == ["${PYTHON_IMAGE} AS wheels", "${PYTHON_IMAGE}"]
    user = dockerfile_instruction("USER")[-1].partition(":")[0]
    assert user.isdigit()  # numeric, so the kubelet can check runAsNonRoot
    assert int(user) != 0
    exposed = {int(port) for port in dockerfile_instruction("EXPOSE")[0].split()}
    defaults = GatewaySettings()
    assert exposed == {parse_addr(defaults.server.addr)[1], parse_addr(defaults.metrics.addr)[1]}


def test_the_wheels_build_from_exactly_what_the_dockerfile_copies(tmp_path: Path) -> None:
    """The first stage, replayed: build context minus .dockerignore, the COPY lines, pip wheel."""
    context = set(build_context())
    source = tmp_path / "src"
    source.mkdir()
    for copy in dockerfile_instruction("COPY", stage=0):
        *sources, destination = shlex.split(copy)
        assert not any(word.startswith("--") for word in sources), "COPY flags are not modelled"
        for item in sources:
            item = item.rstrip("/")
            for relative in sorted(context):
                if relative.as_posix() == item:  # a file: into the destination folder
                    target = source / destination / relative.name
                elif relative.as_posix().startswith(item + "/"):  # a folder: its content
                    target = source / destination / relative.relative_to(item)
                else:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ROOT / relative, target)
    projects = [
        str(path)
        for target in wheel_targets()
        for path in ([source] if target == "." else sorted(source.glob(target.rstrip("/"))))
    ]
    wheels = tmp_path / "wheels"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(wheels),
            *projects,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    built = {path.name.split("-")[0] for path in wheels.glob("*.whl")}
    expected = {"meta-native-gateway", *plugin_distributions().values()}
    assert built == {name.replace("-", "_") for name in expected}
