"""deploy/k8s: every overlay renders with kustomize (kubectl's), every object validates strictly
against Kubernetes 1.30 and 1.37 (kubernetes-validate's bundled schemas), and the manifests keep
petseg's own rules. Offline and without an API server: what a cluster would do with them is not
proved here (docs/containers-and-kubernetes.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from frontend_server.metrics import LOAD_METRIC
from petseg.fleet.autoscale import TARGET_LOAD
from petseg.rollout import kube_decider
from petseg.serving.decisions import DECISION_KEY
from tests.support.manifests import (
    DECIDER,
    K8S,
    ROOT,
    SERVER,
    containers,
    kustomize,
    of_kind,
    only,
    pod_labels,
    pod_spec,
    server_config,
)

OVERLAYS = ("cpu", "gpu")
COMPONENTS = tuple(sorted(path.name for path in (K8S / "components").iterdir()))
TARGETS = (*OVERLAYS, *(f"{name}+components" for name in OVERLAYS))
"""Each overlay as it is, and with every component added to it, as
docs/containers-and-kubernetes.md says to."""
KUBERNETES = ("1.30.0", "1.37.0")
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "PodMonitor")}
"""CRDs: no schema here knows them, so only our rules check them."""
IN_POD_ONLY = {8080, 8081, 7070, 7071}
"""Inference (its key never leaves the pod), management and gRPC: no Service, no open port."""
WEB_PORT = 5000
METRICS_PORTS = {8082, 5001}
"""TorchServe's metrics, and the web proxy's operators' listener (PETSEG_METRICS_ADDRESS)."""
ADAPTER_RULES = "prometheus-adapter-rules.yaml"
BASE = K8S / "base"
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
INGRESS_NGINX = "nginx.ingress.kubernetes.io/"
DEPLOYMENTS = (SERVER, DECIDER)
WRITABLE = {
    "model-server": {"/run/petseg", "/tmp", "/var/lib/petseg/model-store"},
    "web": {"/tmp"},
    "decider": {"/tmp"},
}
"""What each container may write, all emptyDirs: enough under podman with a read-only root
(deploy/k8s/podman-play.sh)."""
PROXY_PORT = 5001
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
"""The proxy's operators' listener: what the decider reads, through the headless Service."""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    targets = {name: kustomize(K8S / "overlays" / name) for name in OVERLAYS}
    # Components go into a copy of each overlay: deploy/k8s holds all that kustomize reads.
    copy = tmp_path_factory.mktemp("repo") / "k8s"
    shutil.copytree(K8S, copy)
    for name in OVERLAYS:
        path = copy / "overlays" / name / "kustomization.yaml"
        kustomization = yaml.safe_load(path.read_text())
        kustomization["components"] = [f"../../components/{c}" for c in COMPONENTS]
        path.write_text(yaml.safe_dump(kustomization))
        targets[f"{name}+components"] = kustomize(path.parent)
    return targets


def container_ports(objects: list[dict]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for c in containers(objects).values() for p in c["ports"]}


@pytest.mark.parametrize("version", KUBERNETES)
@pytest.mark.parametrize("target", TARGETS)
def test_every_object_validates_strictly(rendered, target: str, version: str) -> None:
    failures = []
    for obj in rendered[target]:
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {e!r}")
    assert not failures


def test_the_validation_rejects_a_misspelt_field(rendered) -> None:
    """The check above could pass by being lax; a field that is not in the schema fails."""
    typo = yaml.safe_load(yaml.safe_dump(only(rendered["cpu"], "Deployment", SERVER)))
    typo["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES[0], strict=True)


# A misspelt kind, and the autoscaling/v2beta2 of TorchServe's own Helm chart (gone in 1.26).
@pytest.mark.parametrize(
    "api_version, kind",
    [("apps/v1", "Deploymnt"), ("autoscaling/v2beta2", "HorizontalPodAutoscaler")],
)
def test_the_validation_rejects_an_unknown_kind(api_version: str, kind: str) -> None:
    obj = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "petseg"}}
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(obj, KUBERNETES[0], strict=True)


@pytest.mark.parametrize("target", TARGETS)
def test_custom_kinds_select_the_pods(rendered, target: str) -> None:
    labels = pod_labels(rendered[target])
    custom = [obj for obj in rendered[target] if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS]
    assert bool(custom) == target.endswith("+components")
    for obj in custom:
        assert obj["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ports = {endpoint["port"] for endpoint in obj["spec"]["podMetricsEndpoints"]}
        assert {container_ports(rendered[target])[port] for port in ports} == METRICS_PORTS


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_has_probes_resources_and_runs_unprivileged(rendered, target) -> None:
    deployments = {d["metadata"]["name"] for d in of_kind(rendered[target], "Deployment")}
    assert deployments == set(DEPLOYMENTS)
    for deployment in DEPLOYMENTS:
        check_pod(pod_spec(rendered[target], deployment))
    # Only the decider holds a token for the API server: the server pods never call it.
    assert pod_spec(rendered[target], SERVER)["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod_spec(rendered[target], SERVER)


def check_pod(spec: dict) -> None:
    """Probes, resources and an unprivileged security context, in every container."""
    pod = spec["securityContext"]
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in spec["containers"]:
        assert {"startupProbe", "readinessProbe", "livenessProbe"} <= container.keys()
        resources = container["resources"]
        assert {"cpu", "memory", "ephemeral-storage"} <= resources["requests"].keys()
        assert resources["limits"]["memory"] == resources["requests"]["memory"]
        security = {**pod, **container["securityContext"]}
        assert security["runAsNonRoot"] and security["runAsUser"] != 0
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"] == {"drop": ["ALL"]}


@pytest.mark.parametrize("target", TARGETS)
def test_only_emptydirs_are_writable(rendered, target: str) -> None:
    for deployment in DEPLOYMENTS:
        volumes = {v["name"]: v for v in pod_spec(rendered[target], deployment)["volumes"]}
        for name, container in containers(rendered[target], deployment).items():
            mounts = container["volumeMounts"]
            writable = {m["mountPath"]: m["name"] for m in mounts if not m.get("readOnly")}
            assert writable.keys() == WRITABLE[name]
            assert all("emptyDir" in volumes[volume] for volume in writable.values())
    volumes = {v["name"]: v for v in pod_spec(rendered[target])["volumes"]}
    # The keys: in memory, written by TorchServe, only read by the proxy.
    assert volumes["keys"]["emptyDir"]["medium"] == "Memory"
    web_mounts = {m["mountPath"]: m for m in containers(rendered[target])["web"]["volumeMounts"]}
    assert web_mounts["/run/petseg"]["readOnly"]


@pytest.mark.parametrize("target", TARGETS)
def test_probes_wait_for_the_model_but_never_kill_a_busy_worker(rendered, target) -> None:
    server, web = containers(rendered[target])["model-server"], containers(rendered[target])["web"]
    for probe in ("startupProbe", "readinessProbe"):
        assert server[probe]["exec"]["command"] == ["petseg", "status"]  # a READY worker
    startup = server["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # a slow node's load
    # Liveness asks only whether a server accepts connections: no worker, no model call.
    assert server["livenessProbe"]["tcpSocket"]["port"] == "inference"
    assert web["livenessProbe"]["tcpSocket"]["port"] == "http"
    assert web["readinessProbe"]["httpGet"]["path"] == "/api/health"


@pytest.mark.parametrize("target", TARGETS)
def test_no_service_reaches_torchserve(rendered, target: str) -> None:
    """The web Service reaches the web port only, the decider's headless one the proxies'
    operators' listener only: no Service leads to a TorchServe port."""
    ports = container_ports(rendered[target])
    services = of_kind(rendered[target], "Service")
    reached = {}
    for service in services:
        for port in service["spec"]["ports"]:
            target_port = port.get("targetPort", port["port"])
            reached[service["metadata"]["name"]] = ports.get(target_port, target_port)
            assert port["port"] not in IN_POD_ONLY
    assert reached == {"petseg-web": WEB_PORT, "petseg-proxies": PROXY_PORT}
    services = [s for s in services if s["spec"].get("clusterIP") != "None"]
    for ingress in (obj for obj in rendered[target] if obj["kind"] == "Ingress"):
        backends = [
            p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]
        ]
        assert {b["name"] for b in backends} == {s["metadata"]["name"] for s in services}


@pytest.mark.parametrize("target", TARGETS)
def test_management_listens_on_the_pods_loopback_only(rendered, target: str) -> None:
    settings = server_config(rendered[target])["data"]["config.properties"]
    assert re.search(r"^management_address=http://127\.0\.0\.1:", settings, re.M)
    # TorchServe 0.12 binds gRPC to 127.0.0.1 unless these say otherwise.
    assert not re.search(r"^grpc_(inference|management)_address=", settings, re.M)
    ports = set(container_ports(rendered[target]).values())
    assert ports == {8080, WEB_PORT, *METRICS_PORTS}  # 8080 for the liveness probe only


@pytest.mark.parametrize("target", TARGETS)
def test_the_proxy_serves_its_metrics_on_the_declared_port(rendered, target: str) -> None:
    web = containers(rendered[target])["web"]
    address = {e["name"]: e["value"] for e in web["env"]}["PETSEG_METRICS_ADDRESS"]
    assert int(address.rpartition(":")[2]) == container_ports(rendered[target])["proxy-metrics"]


@pytest.mark.parametrize("target", TARGETS)
def test_every_configmap_value_comes_from_config(rendered, target: str) -> None:
    """The generated ConfigMap holds config/'s files, and both Deployments mount it by its
    hashed name (a change in config/ rolls the server pods and the decider); the decisions
    ConfigMap holds nothing the manifests declare (test below)."""
    config_map = server_config(rendered[target])
    names = {c["metadata"]["name"] for c in of_kind(rendered[target], "ConfigMap")}
    assert names == {config_map["metadata"]["name"], kube_decider.CONFIG_MAP}
    assert "binaryData" not in config_map
    for key, value in config_map["data"].items():
        assert value == (ROOT / "config" / key).read_text(), f"{key}: run `make k8s-config`"
    for deployment in DEPLOYMENTS:
        volumes = pod_spec(rendered[target], deployment)["volumes"]
        assert {v["configMap"]["name"] for v in volumes if "configMap" in v} == names


def test_kustomize_reads_copies_of_config_and_nothing_else() -> None:
    """kustomize reads only files within the base (its kustomization says why): copies of
    config/, each equal to its source, and no copy that the ConfigMap leaves out."""
    [generator] = yaml.safe_load((BASE / "kustomization.yaml").read_text())["configMapGenerator"]
    read = sorted(generator["files"])
    assert read == sorted(str(path.relative_to(BASE)) for path in (BASE / "config").iterdir())
    for name in read:
        source = ROOT / "config" / Path(name).name
        assert (BASE / name).read_bytes() == source.read_bytes(), f"{name}: run `make k8s-config`"


def test_make_copies_config_where_kustomize_reads_it(tmp_path: Path) -> None:
    """`make k8s-config` (run by `make manifests`) brings a stale copy back to config/'s file,
    saying so on stderr only: `make manifests | kubectl apply -f -` reads stdout."""
    shutil.copy(ROOT / "Makefile", tmp_path)
    shutil.copytree(ROOT / "config", tmp_path / "config")
    shutil.copytree(BASE / "config", tmp_path / BASE.relative_to(ROOT) / "config")
    stale = tmp_path / BASE.relative_to(ROOT) / "config" / "model-config.yaml"
    stale.write_text("batchSize: 1\n")
    make = subprocess.run(
        ["make", "--no-print-directory", "k8s-config"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert make.returncode == 0, make.stderr
    assert stale.read_bytes() == (ROOT / "config" / "model-config.yaml").read_bytes()
    assert make.stdout == ""
    assert "model-config.yaml: copied from config/model-config.yaml" in make.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ingress_retries_a_failed_upload_on_another_pod(rendered, overlay: str) -> None:
    """As the local balancer does (deploy/nginx/nginx.conf): the same failures, POSTs included,
    with the body buffered so it can be sent again; a bounded number of tries in bounded time;
    never through the Service's one address (service-upstream), which would leave nginx no
    other pod to try."""
    annotations = only(rendered[f"{overlay}+components"], "Ingress")["metadata"]["annotations"]
    [local] = re.findall(r"^\s*proxy_next_upstream (.+);$", NGINX_CONF.read_text(), re.MULTILINE)
    retried = annotations[INGRESS_NGINX + "proxy-next-upstream"]
    assert retried.split() == local.split()
    assert {"error", "http_503", "non_idempotent"} <= set(retried.split())
    assert 2 <= int(annotations[INGRESS_NGINX + "proxy-next-upstream-tries"]) <= 5
    # 0 would let retries begin at any time: an upload could run on every pod in turn.
    read_timeout = int(annotations[INGRESS_NGINX + "proxy-read-timeout"])
    assert 0 < int(annotations[INGRESS_NGINX + "proxy-next-upstream-timeout"]) < read_timeout
    assert annotations[INGRESS_NGINX + "proxy-request-buffering"] == "on"
    assert annotations.get(INGRESS_NGINX + "service-upstream", "false") == "false"


ANYWHERE = "anywhere"


def peers(rule: dict, field: str, objects: list[dict]) -> list[str]:
    """Whom a rule lets in (``from``) or out to (``to``), in words: anywhere, a namespace, or
    the Deployments whose pods a podSelector picks."""
    if not rule.get(field):
        return [ANYWHERE]
    found = []
    for peer in rule[field]:
        if "namespaceSelector" in peer:
            assert "podSelector" not in peer
            labels = peer["namespaceSelector"]["matchLabels"]
            found.append(f"namespace {labels['kubernetes.io/metadata.name']}")
        else:
            selector = peer["podSelector"]["matchLabels"].items()
            picked = [d for d in DEPLOYMENTS if selector <= pod_labels(objects, d).items()]
            found.append(f"pods of {'+'.join(picked)}")
    return found


def openings(policies: list[dict], direction: str, objects: list[dict]) -> set[tuple]:
    """(port, protocol, peer) that ``policies`` open in ``direction`` (ingress or egress)."""
    field = "from" if direction == "ingress" else "to"
    return {
        (port["port"], port["protocol"], peer)
        for policy in policies
        for rule in policy["spec"].get(direction, [])
        for peer in peers(rule, field, objects)
        for port in rule["ports"]
    }


@pytest.mark.parametrize("target", TARGETS)
def test_network_policies_open_only_what_each_pod_needs(rendered, target: str) -> None:
    """Deny all, then: into the server pods the web port from anywhere, the metrics ports from
    monitoring, the proxies' listener from the decider too, and nothing out of them (the pod
    calls nothing outside itself); out of the decider DNS, the proxies' listener and the API
    server, and nothing into it."""
    objects = rendered[target]
    policies = of_kind(objects, "NetworkPolicy")
    deny = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert [p["spec"]["policyTypes"] for p in deny] == [["Ingress", "Egress"]]
    assert not any("egress" in p["spec"] or "ingress" in p["spec"] for p in deny)
    monitoring = "namespace monitoring"
    expected = {
        SERVER: (
            {(WEB_PORT, "TCP", ANYWHERE), *((p, "TCP", monitoring) for p in METRICS_PORTS)}
            | {(PROXY_PORT, "TCP", f"pods of {DECIDER}")},
            set(),
        ),
        DECIDER: (
            set(),
            {(53, "UDP", ANYWHERE), (53, "TCP", ANYWHERE), (443, "TCP", ANYWHERE)}
            | {(6443, "TCP", ANYWHERE), (PROXY_PORT, "TCP", f"pods of {SERVER}")},
        ),
    }
    chosen = [p for p in policies if p not in deny]
    for deployment, (ingress, egress) in expected.items():
        labels = pod_labels(objects, deployment).items()
        applying = [p for p in chosen if p["spec"]["podSelector"]["matchLabels"].items() <= labels]
        assert openings(applying, "ingress", objects) == ingress, deployment
        assert openings(applying, "egress", objects) == egress, deployment
    for policy in chosen:  # each picks the pods of one Deployment, never both
        selector = policy["spec"]["podSelector"]["matchLabels"].items()
        assert len([d for d in DEPLOYMENTS if selector <= pod_labels(objects, d).items()]) == 1


@pytest.mark.parametrize("target", TARGETS)
def test_rollouts_and_shutdowns_lose_no_request(rendered, target: str) -> None:
    deployment = only(rendered[target], "Deployment", SERVER)
    assert "replicas" not in deployment["spec"]  # the autoscaler's
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    server, web = containers(rendered[target])["model-server"], containers(rendered[target])["web"]
    stops = [c["lifecycle"]["preStop"]["sleep"]["seconds"] for c in (web, server)]
    # TorchServe outlives the proxy's last requests; both end before the grace period does.
    assert stops == sorted(set(stops))
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > stops[-1]
    startup = server["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert deployment["spec"]["progressDeadlineSeconds"] > budget


@pytest.mark.parametrize("target", TARGETS)
def test_autoscaler_scales_the_deployment_on_the_model_servers_load(rendered, target) -> None:
    autoscaler = only(rendered[target], "HorizontalPodAutoscaler")
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    assert autoscaler["spec"]["scaleTargetRef"]["name"] == SERVER
    assert autoscaler["spec"]["minReplicas"] >= 2  # the disruption budget lets one go
    metrics = {m["type"]: m for m in autoscaler["spec"]["metrics"]}
    assert metrics["ContainerResource"]["containerResource"]["container"] == "model-server"
    if target.endswith("+components"):
        pods = {
            m["pods"]["metric"]["name"]: m["pods"]["target"]
            for m in autoscaler["spec"]["metrics"]
            if m["type"] == "Pods"
        }
        for component in ("queue-latency-hpa", "load-hpa"):
            rules = yaml.safe_load((K8S / "components" / component / ADAPTER_RULES).read_text())
            [rule] = rules["rules"]
            assert rule["name"]["as"] in pods, component  # the adapter serves what it asks for
        # the same target as the local fleet's autoscaler, which the suite runs
        assert float(pods[LOAD_METRIC]["averageValue"]) == TARGET_LOAD
    behavior = autoscaler["spec"]["behavior"]  # scales in as well as out, and in slowly
    assert behavior["scaleDown"]["policies"] and behavior["scaleDown"]["stabilizationWindowSeconds"]


@pytest.mark.parametrize("target", TARGETS)
def test_budget_and_services_select_the_server_pods_only(rendered, target: str) -> None:
    labels, decider = pod_labels(rendered[target]), pod_labels(rendered[target], DECIDER)
    budget = only(rendered[target], "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    selectors = [budget["spec"]["selector"]["matchLabels"]]
    selectors += [s["spec"]["selector"] for s in of_kind(rendered[target], "Service")]
    for selector in selectors:
        assert selector.items() <= labels.items()
        assert not selector.items() <= decider.items()


@pytest.mark.parametrize("target", TARGETS)
def test_gpu_count_follows_the_gpu_limit(rendered, target: str) -> None:
    server = containers(rendered[target])["model-server"]
    env = {e["name"]: e["value"] for e in server["env"]}
    gpus = server["resources"]["limits"].get("nvidia.com/gpu", "0")
    assert env["PETSEG_NUMBER_OF_GPU"] == gpus == ("1" if target.startswith("gpu") else "0")


@pytest.mark.parametrize("target", TARGETS)
def test_the_pod_applies_the_serving_state_of_its_config_map(rendered, target: str) -> None:
    """The model server starts with `petseg serve --foreground` (tests/integration/test_pod_start
    runs this command line): the state it applies is config/serving.json from the ConfigMap,
    mounted where the image's petseg looks, and read-only: the deployment declares it."""
    server = containers(rendered[target])["model-server"]
    assert "command" not in server, "the image's entrypoint (tini -g) must stay"
    args = server["args"]
    assert args[0] == "petseg" and args[args.index("serve") + 1] == "--foreground"
    assert "--read-only-state" in args[: args.index("serve")]
    assert "--model-config=/opt/petseg/app/config/model-config.yaml" in args
    assert "--set=number_of_gpu=$(PETSEG_NUMBER_OF_GPU)" in args
    mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
    assert mounts["config"] == "/opt/petseg/app/config"  # the image's ROOT/config: STATE_FILE
    config_map = server_config(rendered[target])["data"]
    assert config_map["serving.json"] == (ROOT / "config" / "serving.json").read_text()


@pytest.mark.parametrize("target", TARGETS)
def test_the_decisions_config_map_holds_no_data_and_keeps_its_name(rendered, target: str) -> None:
    """What the decider writes survives every `kubectl apply -k`: the manifests declare the
    ConfigMap without data (apply removes only what it applied before), and as a plain
    resource, not a generated one: no hash in its name, which the pods and the Role use."""
    decisions = only(rendered[target], "ConfigMap", kube_decider.CONFIG_MAP)
    assert not {"data", "binaryData", "immutable"} & decisions.keys()
    generated = yaml.safe_load((BASE / "kustomization.yaml").read_text())["configMapGenerator"]
    assert kube_decider.CONFIG_MAP not in {generator["name"] for generator in generated}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_every_pod_mounts_the_decisions_as_a_folder(rendered, target, deployment) -> None:
    """A folder mount of every key, never subPath (the kubelet never updates a subPath mount),
    where the pod's petseg is told to read it."""
    volumes = {v["name"]: v for v in pod_spec(rendered[target], deployment)["volumes"]}
    [name] = [
        n for n, v in volumes.items() if v.get("configMap", {}).get("name") == "petseg-decisions"
    ]
    assert "items" not in volumes[name]["configMap"]
    [(container, mount)] = [
        (c, m)
        for c in containers(rendered[target], deployment).values()
        for m in c["volumeMounts"]
        if m["name"] == name
    ]
    assert not {"subPath", "subPathExpr"} & mount.keys() and mount["readOnly"]
    assert mount["mountPath"] == str(kube_decider.DECISIONS_FILE.parent)
    assert kube_decider.DECISIONS_FILE.name == DECISION_KEY
    assert f"--decisions={kube_decider.DECISIONS_FILE}" in container["args"]


@pytest.mark.parametrize("target", TARGETS)
def test_the_decider_is_one_pod_of_the_model_server_image_with_its_own_account(
    rendered, target: str
) -> None:
    objects = rendered[target]
    deployment = only(objects, "Deployment", DECIDER)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # never two at once
    scaled = {
        a["spec"]["scaleTargetRef"]["name"] for a in of_kind(objects, "HorizontalPodAutoscaler")
    }
    assert DECIDER not in scaled
    spec = pod_spec(objects, DECIDER)
    [decider] = spec["containers"]
    assert decider["image"] == containers(objects)["model-server"]["image"]  # it holds petseg
    assert "command" not in decider, "the image's entrypoint (tini) must stay"
    assert decider["args"][:4] == ["petseg", "rollout", "watch", "--kubernetes"]
    options = dict(arg.removeprefix("--").split("=", 1) for arg in decider["args"][4:])
    proxies = only(objects, "Service", "petseg-proxies")
    service = f"{proxies['metadata']['name']}:{proxies['spec']['ports'][0]['port']}"
    assert options["service"] == service == kube_decider.PROXIES_SERVICE
    assert options["config-map"] == kube_decider.CONFIG_MAP
    assert spec["serviceAccountName"] == DECIDER and spec["automountServiceAccountToken"]
    assert only(objects, "ServiceAccount", DECIDER)["automountServiceAccountToken"]
    mounts = {m["name"]: m["mountPath"] for m in decider["volumeMounts"]}
    assert mounts["config"] == "/opt/petseg/app/config"  # the server pods' serving.json


@pytest.mark.parametrize("target", TARGETS)
def test_the_deciders_role_lets_it_read_and_patch_the_decisions_only(rendered, target) -> None:
    objects = rendered[target]
    assert not of_kind(objects, "ClusterRole") and not of_kind(objects, "ClusterRoleBinding")
    [role] = of_kind(objects, "Role")
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [kube_decider.CONFIG_MAP],
            "verbs": ["get", "patch"],
        }
    ]
    [binding] = of_kind(objects, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    namespace = only(objects, "Namespace")["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": DECIDER, "namespace": namespace}
    ]


@pytest.mark.parametrize("target", TARGETS)
def test_the_headless_service_names_every_ready_proxys_listener(rendered, target: str) -> None:
    """Its DNS name resolves to each ready server pod (selector: test above), port 5001 only."""
    service = only(rendered[target], "Service", "petseg-proxies")
    assert service["spec"]["clusterIP"] == "None"
    assert not service["spec"].get("publishNotReadyAddresses")
    [port] = service["spec"]["ports"]
    assert container_ports(rendered[target])[port["targetPort"]] == port["port"] == PROXY_PORT


def test_the_deciders_probes_follow_its_heartbeat(rendered, tmp_path: Path) -> None:
    """One check for all three probes: the heartbeat file the loop touches after each look is
    recent. Run here on a file of the test's: fresh passes, old or missing fails."""
    [decider] = containers(rendered["cpu"], DECIDER).values()
    heartbeat = dict(a.removeprefix("--").split("=", 1) for a in decider["args"][4:])["heartbeat"]
    assert Path(heartbeat).parent == Path("/tmp")  # its emptyDir
    probes = {json.dumps(decider[p]["exec"]["command"]) for p in PROBES}
    [command] = [json.loads(probe) for probe in probes]
    assert command[0] == "/opt/venv/bin/python"  # the image's (deploy/model-server/petseg)
    assert command[0] in (ROOT / "deploy" / "model-server" / "petseg").read_text()
    beat = tmp_path / "heartbeat"
    probe = [sys.executable, *(part.replace(heartbeat, str(beat)) for part in command[1:])]
    assert subprocess.run(probe, capture_output=True).returncode != 0, "no heartbeat yet"
    beat.touch()
    assert subprocess.run(probe).returncode == 0
    os.utime(beat, (time.time() - 3600, time.time() - 3600))
    assert subprocess.run(probe).returncode == 1, "an hour-old heartbeat"


def test_an_archive_copy_takes_the_config_maps_model_config(tmp_path: Path) -> None:
    """What --archives-from/--model-config do to each archive: model-config.yaml replaced,
    everything else as it was; an archive without one refused."""
    from petseg.packaging.archive import with_model_config

    image_archive, config = tmp_path / "image.mar", tmp_path / "model-config.yaml"
    with zipfile.ZipFile(image_archive, "w") as archive:
        archive.writestr("weights.pt", b"\0" * 1000)
        archive.writestr("model-config.yaml", "batchSize: 8\n")
    config.write_text("batchSize: 4\n")
    with_model_config(image_archive, tmp_path / "out.mar", config)
    with zipfile.ZipFile(tmp_path / "out.mar") as copy:
        assert copy.read("model-config.yaml") == b"batchSize: 4\n"
        assert copy.read("weights.pt") == b"\0" * 1000
    with zipfile.ZipFile(tmp_path / "bare.mar", "w") as archive:
        archive.writestr("weights.pt", b"")
    with pytest.raises(ValueError, match=r"no model-config\.yaml"):
        with_model_config(tmp_path / "bare.mar", tmp_path / "out2.mar", config)
