"""deploy/k8s, checked offline: every overlay builds, validates against the Kubernetes API schemas, and
describes the same system as the native run and Compose."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml
from packaging_support import (
    APP_PROCESSES,
    APP_WORKLOAD_KINDS,
    K8S,
    OVERLAYS,
    REPO,
    app_workload,
    container_env,
    find,
    generated,
    kustomize_build,
    native_argv,
    native_port,
    pod_spec,
    required_env,
)

# kind v0.33's default node image is Kubernetes 1.37; 1.34 is the oldest release still maintained upstream.
KUBERNETES_VERSIONS = ("1.37.0", "1.34.0")
NAMESPACE = "cqrs-lab"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "CronJob"}
CLUSTER_SCOPED = {"Namespace"}
# Client-side `kubectl apply` keeps a copy of each object in an annotation of at most 256 KiB.
MAX_CONFIGMAP_BYTES = 256 * 1024

Objects = tuple[dict[str, Any], ...]


def workloads(objects: Objects) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] in WORKLOAD_KINDS}


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(obj)
    return [*spec.get("initContainers", []), *spec["containers"]]


def main_container(obj: dict[str, Any]) -> dict[str, Any]:
    return pod_spec(obj)["containers"][0]


@pytest.mark.parametrize("directory", [K8S / "base", *OVERLAYS], ids=lambda p: p.name)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_build_validates_strictly(directory: Path, version: str) -> None:
    """kubernetes-validate --strict: every field known to that API version, nothing misspelt or misplaced."""
    objects = kustomize_build(directory)
    assert objects
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")


def kustomization_roots() -> list[Path]:
    """Every folder of the repository with a Kustomization (not a Component, which builds only in one)."""
    roots = []
    for path in REPO.rglob("kustomization.yaml"):
        if ".venv" in path.parts or ".git" in path.parts:
            continue
        if yaml.safe_load(path.read_text())["kind"] == "Kustomization":
            roots.append(path.parent)
    return sorted(roots)


def documented_kustomize_paths() -> set[str]:
    """The folders the README, docs/, the Tiltfile and the manifests tell people to build or apply."""
    sources = [REPO / "README.md", REPO / "Tiltfile", *(REPO / "docs").rglob("*.md"), *K8S.rglob("*.yaml")]
    command = re.compile(r"kubectl\s+(?:kustomize|apply\s+-k|delete\s+-k|diff\s+-k)\s+((?:-\S+\s+)*)(\S+)")
    found = set()
    for source in sources:
        for flags, path in command.findall(source.read_text()):
            assert not flags.strip(), f"{source.name}: `{flags.strip()}` is not needed"
            found.add(path.rstrip(".,;:`)"))
    return found


@pytest.mark.parametrize("directory", kustomization_roots(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_kustomization_builds_with_the_plain_command(directory: Path) -> None:
    """`kubectl kustomize DIR` with no --load-restrictor: what `kubectl apply -k DIR` builds as well."""
    assert kustomize_build(directory)


def test_every_documented_kubectl_command_builds() -> None:
    paths = documented_kustomize_paths()
    assert "deploy/k8s/overlays/kind" in paths and "deploy/k8s/overlays/kind-eventstore" in paths
    for path in paths:
        assert (REPO / path / "kustomization.yaml").exists(), path
        assert kustomize_build(REPO / path), path


def test_the_overlays_are_the_kind_one_and_its_event_store_variant() -> None:
    assert {p.name for p in OVERLAYS} == {"kind", "kind-eventstore"}
    kind = {(o["kind"], o["metadata"]["name"]) for o in kustomize_build(K8S / "overlays" / "kind")}
    with_store = {
        (o["kind"], o["metadata"]["name"]) for o in kustomize_build(K8S / "overlays" / "kind-eventstore")
    }
    added = {(k, n) for k, n in with_store - kind if not re.search(r"-[a-z0-9]{10}$", n)}
    assert added == {("StatefulSet", "event-store"), ("Service", "event-store"), ("Job", "event-store-init")}


def test_the_event_store_subscribes_with_the_replication_script_and_a_slot_of_its_own() -> None:
    objects = kustomize_build(K8S / "overlays" / "kind-eventstore")
    init = find(objects, "Job", "event-store-init")
    replication = find(objects, "Job", "replication-init")
    assert pod_spec(init)["volumes"] == pod_spec(replication)["volumes"]  # the same script's ConfigMap
    job, base_job = main_container(init), main_container(replication)
    assert job["command"] == base_job["command"]
    env, base_env = (
        {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]} for c in (job, base_job)
    )
    store = {
        e["name"]: e.get("value") for e in main_container(find(objects, "StatefulSet", "event-store"))["env"]
    }
    assert (env["READ_DB_HOST"], env["READ_DB_NAME"], env["READ_DB_USER"]) == (
        "event-store",
        store["APP_DB_NAME"],
        store["APP_DB_USER"],
    )
    assert env["SUBSCRIPTION"] != f"{base_env['READ_DB_NAME']}_events"  # slots are named after subscriptions
    assert {k: v for k, v in env.items() if not k.startswith(("READ_DB_", "SUBSCRIPTION"))} == {
        k: v for k, v in base_env.items() if not k.startswith("READ_DB_")
    }
    # No Job ordering in Kubernetes: it waits for the publication replication-init creates.
    wait = " ".join(pod_spec(init)["initContainers"][0]["command"])
    assert "pg_publication" in wait and "event-store" in wait


def test_only_the_event_store_overlay_points_the_read_side_at_it() -> None:
    objects = kustomize_build(K8S / "overlays" / "kind-eventstore")
    for directory in (K8S / "base", K8S / "overlays" / "kind"):
        for obj in kustomize_build(directory):
            if obj["kind"] in WORKLOAD_KINDS:
                for container in containers(obj):
                    assert "EVENT_STORE_DATABASE_URL" not in container_env(
                        kustomize_build(directory), container
                    )
    store = {
        e["name"]: e.get("value") for e in main_container(find(objects, "StatefulSet", "event-store"))["env"]
    }
    password = base64.b64decode(generated(objects, "Secret", "databases")["data"]["EVENT_STORE_DB_PASSWORD"])
    pointed = set()
    for name, obj in workloads(objects).items():
        if obj["kind"] in ("Deployment", "StatefulSet") and "EVENT_STORE_DATABASE_URL" in container_env(
            objects, main_container(obj)
        ):
            pointed.add(name)
            url = urlparse(container_env(objects, main_container(obj))["EVENT_STORE_DATABASE_URL"])
            assert (url.hostname, url.port, url.path) == ("event-store", 5432, f"/{store['APP_DB_NAME']}")
            assert (url.username, url.password) == (store["APP_DB_USER"], password.decode())
    assert pointed == {"read-service", "projector"}


@pytest.mark.parametrize("directory", [K8S / "base", *OVERLAYS], ids=lambda p: p.name)
def test_everything_lives_in_one_namespace(directory: Path) -> None:
    for obj in kustomize_build(directory):
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"].get("namespace") == NAMESPACE, (obj["kind"], obj["metadata"]["name"])


def test_the_system_has_every_process_and_server(base_objects: Objects) -> None:
    kinds = {name: obj["kind"] for name, obj in workloads(base_objects).items()}
    assert kinds == {
        **APP_WORKLOAD_KINDS,
        "prometheus": "Deployment",
        "grafana": "Deployment",
        "write-db": "StatefulSet",
        "read-db": "StatefulSet",
        "rabbitmq": "StatefulSet",
        "migrate": "Job",
        "replication-init": "Job",
        "purge-idempotency-keys": "CronJob",
    }


def test_expired_idempotency_keys_are_purged_hourly_never_twice_at_once(base_objects: Objects) -> None:
    cron = find(base_objects, "CronJob", "purge-idempotency-keys")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    minute, hour, *rest = cron["spec"]["schedule"].split()
    assert minute.isdigit() and (hour, rest) == ("*", ["*", "*", "*"])
    container = main_container(cron)
    # The command the README gives for cron on a native run, as that command is named in the code.
    assert container["args"] == ["python", "-m", "write_service", "purge_idempotency_keys"]
    assert "purge_idempotency_keys" in (REPO / "README.md").read_text()
    assert (REPO / "services/write_service/ledger/management/commands/purge_idempotency_keys.py").exists()
    assert pod_spec(cron)["restartPolicy"] == "Never"


def test_app_containers_run_the_native_commands(base_objects: Objects) -> None:
    for process in APP_PROCESSES:
        container = main_container(app_workload(base_objects, process))
        assert "command" not in container, "args keep the image's entrypoint (deploy/docker/entrypoint.sh)"
        assert container["args"] == native_argv(process), process


def test_the_migrate_job_runs_make_migrates_commands_in_order(base_objects: Objects) -> None:
    makefile = (REPO / "Makefile").read_text()
    native = re.findall(r"\$\(PY\) -m (\w+ migrate --no-input)\n", makefile.split("\nmigrate:", 1)[1])[:2]
    job = find(base_objects, "Job", "migrate")
    steps = [c["args"] for c in containers(job) if "args" in c]
    assert steps == [["python", "-m", *step.split()] for step in native]


def test_probes_point_at_what_each_process_serves(base_objects: Objects) -> None:
    """Every app process: readiness /readyz and liveness /healthz on its port (the relay's and the projector's
    from their loops' heartbeats, on their metrics port; CONTRACT.md)."""
    for side in ("write_service", "read_service"):
        urls = (REPO / "services" / side / "urls.py").read_text()
        assert 'path("healthz"' in urls and 'path("readyz"' in urls and "django_prometheus.urls" in urls
    served = (REPO / "services" / "cqrs_common" / "metrics.py").read_text()  # the relay's and the projector's
    assert '"/readyz": health.readiness' in served and '"/healthz": health.liveness' in served
    for process in APP_PROCESSES:
        container = main_container(app_workload(base_objects, process))
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        readiness, liveness = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
        assert (readiness["path"], liveness["path"]) == ("/readyz", "/healthz"), process
        assert ports[readiness["port"]] == ports[liveness["port"]] == native_port(process), process


def test_metrics_ports_are_the_ones_the_processes_are_told(base_objects: Objects) -> None:
    for process, variable in (("relay", "RELAY_METRICS_PORT"), ("projector", "PROJECTOR_METRICS_PORT")):
        container = main_container(app_workload(base_objects, process))
        env = container_env(base_objects, container)
        assert int(env[variable]) == container["ports"][0]["containerPort"] == native_port(process)


def test_every_variable_the_settings_read_is_set_in_every_container(base_objects: Objects) -> None:
    for process in APP_PROCESSES:
        for container in containers(app_workload(base_objects, process)):
            env = container_env(base_objects, container)
            # The init container runs the same side's settings (migrate --check), not the process itself.
            scope = process if container["name"] == process else f"migrate-{side_of(process)}"
            assert required_env(scope) - env.keys() == set(), (process, container["name"])
    for container in containers(find(base_objects, "Job", "migrate")):
        if container["name"].startswith("migrate-"):
            env = container_env(base_objects, container)
            assert required_env(container["name"]) - env.keys() == set(), container["name"]


def side_of(process: str) -> str:
    return "write" if process in ("write-service", "relay") else "read"


def test_compose_and_kubernetes_give_each_process_the_same_variables(
    base_objects: Objects, compose: dict[str, Any]
) -> None:
    for process in APP_PROCESSES:
        k8s_env = container_env(base_objects, main_container(app_workload(base_objects, process)))
        compose_env = compose["services"][process]["environment"]
        assert k8s_env.keys() == compose_env.keys(), process
        for key, value in compose_env.items():
            # This leaves out ALLOW_DEVELOPMENT_SECRETS too (Compose says true, the base false: next test) and
            # the projectors' numbering (claimed in Compose, a StatefulSet's in Kubernetes: the test below).
            if not re.search(r"URL|SECRET|TOKEN|PASSWORD|PROJECTOR_ORDINAL|PROJECTOR_REPLICAS", key):
                assert k8s_env[key] == value, (process, key)


@pytest.mark.parametrize("directory", [K8S / "base", *OVERLAYS], ids=lambda p: p.name)
def test_each_projector_pod_is_numbered_by_its_name_among_as_many_as_the_statefulset_runs(
    directory: Path,
) -> None:
    objects = kustomize_build(directory)
    statefulset = app_workload(objects, "projector")
    env = {e["name"]: e for e in main_container(statefulset)["env"]}
    assert env["PROJECTOR_ORDINAL"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert int(env["PROJECTOR_REPLICAS"]["value"]) == statefulset["spec"]["replicas"] > 1
    # Started together, so each owner subscribes first to its partitions (docs/decisions/0008).
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    partitions = int(container_env(objects, main_container(statefulset))["PROJECTOR_PARTITIONS"])
    assert partitions >= statefulset["spec"]["replicas"]


def test_only_local_packagings_allow_development_secrets(base_objects: Objects) -> None:
    """The base's Secrets hold development values and it refuses them; the kind overlays (a local cluster) and
    Compose, when .env does not say otherwise, allow them."""
    allowed = {}
    for directory in (K8S / "base", *OVERLAYS):
        objects = kustomize_build(directory)
        for process in APP_PROCESSES:
            env = container_env(objects, main_container(app_workload(objects, process)))
            allowed[(directory.name, process)] = env["ALLOW_DEVELOPMENT_SECRETS"]
    assert {v for (d, _), v in allowed.items() if d == "base"} == {"false"}
    assert {v for (d, _), v in allowed.items() if d != "base"} == {"true"}
    compose_file = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert compose_file["x-common-env"]["ALLOW_DEVELOPMENT_SECRETS"] == "${ALLOW_DEVELOPMENT_SECRETS:-true}"
    # `cp .env.example .env && docker compose up` must work on a fresh clone.
    assert re.search(r"^ALLOW_DEVELOPMENT_SECRETS=true$", (REPO / ".env.example").read_text(), flags=re.M)


def test_secrets_agree_with_each_other(base_objects: Objects) -> None:
    """The database URLs carry the passwords the database servers give the service roles."""
    databases = decoded(generated(base_objects, "Secret", "databases"))
    write = decoded(generated(base_objects, "Secret", "write-side"))
    read = decoded(generated(base_objects, "Secret", "read-side"))
    assert (
        f"cqrs_write:{databases['WRITE_DB_PASSWORD']}@write-db:5432/cqrs_write" in write["WRITE_DATABASE_URL"]
    )
    assert f"cqrs_read:{databases['READ_DB_PASSWORD']}@read-db:5432/cqrs_read" in read["READ_DATABASE_URL"]
    assert write["DJANGO_SECRET_KEY"] == read["DJANGO_SECRET_KEY"]
    assert write["RABBITMQ_URL"].startswith("amqp://write-service:")
    assert read["RABBITMQ_URL"].startswith("amqp://read-service:")
    assert "CQRS_API_TOKENS" not in read and "WRITE_DATABASE_URL" not in read


def decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_every_container_has_resources_and_no_privileges(base_objects: Objects) -> None:
    for name, obj in workloads(base_objects).items():
        assert pod_spec(obj)["securityContext"]["runAsNonRoot"] is True, name
        for container in containers(obj):
            resources = container["resources"]
            assert resources["requests"].keys() >= {"cpu", "memory"}, (name, container["name"])
            assert resources["limits"].keys() >= {"cpu", "memory"}, (name, container["name"])
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, (
                name,
                container["name"],
            )


def test_the_app_image_runs_as_its_non_root_user(base_objects: Objects) -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    user = re.findall(r"^USER (\d+)", dockerfile, flags=re.M)[-1]
    for process in APP_PROCESSES:
        assert str(pod_spec(app_workload(base_objects, process))["securityContext"]["runAsUser"]) == user


def test_databases_and_broker_are_statefulsets_with_volumes(
    base_objects: Objects, compose: dict[str, Any]
) -> None:
    for name, path in (
        ("write-db", "/var/lib/postgresql/data"),
        ("read-db", "/var/lib/postgresql/data"),
        ("rabbitmq", "/var/lib/rabbitmq"),
    ):
        statefulset = find(base_objects, "StatefulSet", name)
        claims = {c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]}
        mounts = {m["mountPath"]: m["name"] for m in main_container(statefulset)["volumeMounts"]}
        assert mounts[path] in claims, name
        service = find(base_objects, "Service", statefulset["spec"]["serviceName"])
        assert service["spec"]["selector"] == statefulset["spec"]["selector"]["matchLabels"]
    for name in ("write-db", "read-db"):
        container = main_container(find(base_objects, "StatefulSet", name))
        assert container["args"] == compose["services"][name]["command"][1:], "the same settings as Compose"
        assert container["image"] == compose["services"][name]["image"]


def test_services_select_their_pods_on_the_native_ports(base_objects: Objects) -> None:
    for process in APP_PROCESSES:
        service = find(base_objects, "Service", process)
        deployment = app_workload(base_objects, process)
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert [p["port"] for p in service["spec"]["ports"]] == [native_port(process)]


def test_read_service_scales_out_behind_a_disruption_budget(base_objects: Objects) -> None:
    deployment = find(base_objects, "Deployment", "read-service")
    hpa = find(base_objects, "HorizontalPodAutoscaler", "read-service")
    pdb = find(base_objects, "PodDisruptionBudget", "read-service")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "read-service",
    }
    assert hpa["spec"]["minReplicas"] >= 2 > pdb["spec"]["minAvailable"]
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize(
    ("prefix", "folder", "pattern"),
    [
        ("prometheus-rules", "observability/prometheus/rules", "*.yml"),
        ("grafana-dashboards", "observability/grafana/dashboards", "*.json"),
        ("grafana-datasources", "observability/grafana/provisioning/datasources", "*.yml"),
        ("grafana-dashboard-providers", "observability/grafana/provisioning/dashboards", "*.yml"),
    ],
)
def test_monitoring_configmaps_carry_every_file(
    base_objects: Objects, prefix: str, folder: str, pattern: str
) -> None:
    """kustomize cannot glob: a file added to observability/ is listed in observability/kustomization.yaml."""
    configmap = generated(base_objects, "ConfigMap", prefix)
    files = {p.name: p.read_text() for p in (REPO / folder).glob(pattern)}
    assert files, folder
    assert configmap["data"] == files
    assert sum(len(v.encode()) for v in files.values()) < MAX_CONFIGMAP_BYTES


def test_prometheus_and_grafana_read_their_configuration_where_it_is_mounted(base_objects: Objects) -> None:
    prometheus = main_container(find(base_objects, "Deployment", "prometheus"))
    mounts = {m["mountPath"]: m["name"] for m in prometheus["volumeMounts"]}
    config_file = next(a for a in prometheus["args"] if a.startswith("--config.file=")).split("=", 1)[1]
    assert mounts[str(Path(config_file).parent)] == "config"
    config = generated(base_objects, "ConfigMap", "prometheus-config")["data"]
    assert (
        config[Path(config_file).name] == (REPO / "observability/prometheus/prometheus.k8s.yml").read_text()
    )
    rule_globs = yaml.safe_load(config[Path(config_file).name])["rule_files"]
    assert all(str(Path(config_file).parent / Path(g).parent) in mounts for g in rule_globs)

    grafana = main_container(find(base_objects, "Deployment", "grafana"))
    mounts = {m["mountPath"] for m in grafana["volumeMounts"]}
    env = container_env(base_objects, grafana)
    for provider_file in (REPO / "observability/grafana/provisioning/dashboards").glob("*.yml"):
        for provider in yaml.safe_load(provider_file.read_text())["providers"]:
            assert provider["options"]["path"] in mounts
    for source_file in (REPO / "observability/grafana/provisioning/datasources").glob("*.yml"):
        for variable in re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", source_file.read_text()):
            assert variable in env, f"{source_file.name} reads ${variable}"
    assert env["PROMETHEUS_URL"] == "http://prometheus:9090"


def test_the_shared_files_reach_the_cluster_unchanged(base_objects: Objects) -> None:
    compose_dir = REPO / "deploy" / "compose"
    rabbitmq = generated(base_objects, "ConfigMap", "rabbitmq-config")["data"]
    assert rabbitmq["rabbitmq.conf"] == (compose_dir / "rabbitmq" / "rabbitmq.conf").read_text()
    definitions = decoded(generated(base_objects, "Secret", "rabbitmq-definitions"))
    assert definitions["definitions.json"] == (compose_dir / "rabbitmq" / "definitions.json").read_text()
    init = generated(base_objects, "ConfigMap", "postgres-init")["data"]
    assert list(init.values()) == [(compose_dir / "postgres" / "init-app-db.sh").read_text()]
    # The replication set-up runs the very SQL files the native deploy/local/replication.sh runs.
    replication = generated(base_objects, "ConfigMap", "replication-init")["data"]
    assert replication == {
        name: (compose_dir / "replication" / name).read_text()
        for name in ("replication-init.sh", "publisher.sql", "subscriber.sql")
    }


def test_kind_maps_the_apis_grafana_and_prometheus_to_the_native_host_ports() -> None:
    cluster = yaml.safe_load((K8S / "kind" / "cluster.yaml").read_text())
    mappings = {m["containerPort"]: m for node in cluster["nodes"] for m in node.get("extraPortMappings", [])}
    objects = kustomize_build(K8S / "overlays" / "kind")
    node_ports = {
        p["nodePort"]: (o["metadata"]["name"], p["port"])
        for o in objects
        if o["kind"] == "Service" and o["spec"].get("type") == "NodePort"
        for p in o["spec"]["ports"]
    }
    assert mappings.keys() == node_ports.keys()
    for node_port, (service, port) in node_ports.items():
        assert mappings[node_port]["hostPort"] == port, f"{service} answers on the host on its own port"
        assert mappings[node_port]["listenAddress"] == "127.0.0.1"
    assert {s for s, _ in node_ports.values()} == {"write-service", "read-service", "grafana", "prometheus"}


def test_the_kind_overlay_lets_tilt_update_the_app_containers() -> None:
    objects = kustomize_build(K8S / "overlays" / "kind")
    entrypoint = (REPO / "deploy" / "docker" / "entrypoint.sh").read_text()
    assert 'RESTART_ON_SYNC:-0}" != "1"' in entrypoint
    for process in APP_PROCESSES:
        container = main_container(app_workload(objects, process))
        env = container_env(objects, container)
        assert env["RESTART_ON_SYNC"] == "1"
        assert container["securityContext"]["readOnlyRootFilesystem"] is False


def test_the_base_keeps_root_filesystems_read_only(base_objects: Objects) -> None:
    for process in APP_PROCESSES:
        for container in containers(app_workload(base_objects, process)):
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert "RESTART_ON_SYNC" not in container_env(base_objects, container)


def test_the_kind_overlays_leave_out_the_autoscaler_kind_cannot_feed() -> None:
    """kind has no metrics-server: its overlays run read-service at the HPA's minimum without the HPA, and the
    README says so; the base keeps the HPA for clusters that have one."""
    base_hpa = find(kustomize_build(K8S / "base"), "HorizontalPodAutoscaler", "read-service")
    for overlay in OVERLAYS:
        objects = kustomize_build(overlay)
        assert not [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"], overlay.name
        replicas = find(objects, "Deployment", "read-service")["spec"]["replicas"]
        assert replicas == base_hpa["spec"]["minReplicas"], overlay.name
        assert not [o for o in objects if "metrics-server" in o["metadata"]["name"]]
    assert "metrics-server" in (REPO / "README.md").read_text()


# The volume types the `restricted` Pod Security profile allows (Kubernetes' Pod Security Standards).
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    """The rules of the `restricted` Pod Security profile (baseline's included) that a pod spec breaks."""
    found = []
    pod = spec.get("securityContext", {})
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(host):
            found.append(host)
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']}: {kinds}")
    if pod.get("runAsUser") == 0:
        found.append("pod runAsUser 0")
    if pod.get("sysctls"):
        found.append("sysctls")
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        name, context = container["name"], container.get("securityContext", {})
        if context.get("privileged"):
            found.append(f"{name}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            found.append(f"{name}: capabilities do not drop ALL")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds capabilities")
        if not context.get("runAsNonRoot", pod.get("runAsNonRoot")):
            found.append(f"{name}: runAsNonRoot is not true")
        if context.get("runAsUser", pod.get("runAsUser")) == 0:
            found.append(f"{name}: runs as uid 0")
        seccomp = context.get("seccompProfile", pod.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccompProfile is {seccomp}")
        if any(p.get("hostPort") for p in container.get("ports", [])):
            found.append(f"{name}: hostPort")
        if context.get("procMount", "Default") != "Default":
            found.append(f"{name}: procMount")
    return found


def test_the_namespace_enforces_the_restricted_pod_security_profile(base_objects: Objects) -> None:
    labels = find(base_objects, "Namespace", NAMESPACE)["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


@pytest.mark.parametrize("directory", [K8S / "base", *OVERLAYS], ids=lambda p: p.name)
def test_every_pod_satisfies_the_restricted_profile(directory: Path) -> None:
    for name, obj in workloads(kustomize_build(directory)).items():
        assert restricted_violations(pod_spec(obj)) == [], name


def test_the_restricted_check_catches_what_the_profile_refuses() -> None:
    good = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "c",
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        ],
    }
    assert restricted_violations(good) == []
    root = {**good, "securityContext": {**good["securityContext"], "runAsUser": 0}}
    no_seccomp = {**good, "securityContext": {"runAsNonRoot": True}}
    host_path = {**good, "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}
    for bad in (root, no_seccomp, host_path):
        assert restricted_violations(bad)


def test_databases_and_broker_run_as_their_images_users(base_objects: Objects) -> None:
    """The official postgres and rabbitmq images run as their own user, uid and gid 999; fsGroup gives it the
    volume."""
    for name in ("write-db", "read-db", "rabbitmq"):
        context = pod_spec(find(base_objects, "StatefulSet", name))["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (999, 999, 999), name
