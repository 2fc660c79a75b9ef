"""Prometheus in Kubernetes, checked offline: the configuration as the cluster mounts it passes `promtool
check config`, and the pod discovery, relabelled here as Prometheus relabels, makes each annotated pod a
target of its own with the job, pod and namespace labels the alerts and dashboards use."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging_support import APP_PROCESSES, find, generated, native_port, pod_spec

Objects = tuple[dict[str, Any], ...]
NAMESPACE = "cqrs-lab"
# Fields of a kubernetes_sd_config (Prometheus's configuration reference) and the roles it knows.
KUBERNETES_SD_FIELDS = {"role", "namespaces", "selectors", "api_server", "kubeconfig_file", "attach_metadata"}
KUBERNETES_SD_ROLES = {"node", "service", "pod", "endpoints", "endpointslice", "ingress"}
# Workloads whose container serves Prometheus metrics, and on which port: the app processes on their native
# port (gunicorn's /metrics or the worker's metrics port), RabbitMQ on its prometheus plugin's.
METRICS_PORTS = {process: native_port(process) for process in APP_PROCESSES} | {"rabbitmq": 15692}


def rendered_prometheus(objects: Objects, root: Path) -> Path:
    """Writes the prometheus Deployment's ConfigMap volumes under `root` at their mount paths, as the pod sees
    them; returns the --config.file."""
    deployment = find(objects, "Deployment", "prometheus")
    container = pod_spec(deployment)["containers"][0]
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    for mount in container["volumeMounts"]:
        source = volumes[mount["name"]].get("configMap")
        if source is None:
            continue
        folder = root / mount["mountPath"].lstrip("/")
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in find(objects, "ConfigMap", source["name"])["data"].items():
            (folder / name).write_text(text)
    config_file = next(a for a in container["args"] if a.startswith("--config.file="))
    return root / config_file.split("=", 1)[1].lstrip("/")


def promtool_knows_kubernetes_sd(promtool: str, scratch: Path) -> bool:
    """Debian's Prometheus is built without Kubernetes discovery; the official image has it."""
    probe = scratch / "probe.yml"
    probe.write_text("scrape_configs:\n  - job_name: p\n    kubernetes_sd_configs: [{role: pod}]\n")
    result = subprocess.run([promtool, "check", "config", str(probe)], capture_output=True, text=True)
    return "kubernetes_sd_configs not found" not in result.stdout + result.stderr


def check_kubernetes_sd_configs(config: dict[str, Any], targets_file: Path) -> None:
    """Checks every kubernetes_sd_config against the reference, then puts an empty file_sd_config in its
    place, so a promtool without Kubernetes discovery checks all the rest (relabelling, rules, globals)."""
    for job in config["scrape_configs"]:
        for sd in job.pop("kubernetes_sd_configs", []):
            assert set(sd) <= KUBERNETES_SD_FIELDS, (job["job_name"], set(sd) - KUBERNETES_SD_FIELDS)
            assert sd["role"] in KUBERNETES_SD_ROLES, job["job_name"]
            assert set(sd.get("namespaces", {})) <= {"names", "own_namespace"}, job["job_name"]
            job.setdefault("file_sd_configs", []).append({"files": [str(targets_file)]})
    targets_file.write_text("[]\n")


def test_the_rendered_configuration_passes_promtool(base_objects: Objects, promtool: str, tmp_path) -> None:
    config_file = rendered_prometheus(base_objects, tmp_path / "pod")
    if not promtool_knows_kubernetes_sd(promtool, tmp_path):
        config = yaml.safe_load(config_file.read_text())
        check_kubernetes_sd_configs(config, tmp_path / "targets.json")
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    result = subprocess.run(
        [promtool, "check", "config", str(config_file)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout, "the rules are found where the pod mounts them"


# ------------------------------------------------------------------------- relabelling, as Prometheus does


def relabel(labels: dict[str, str], configs: list[dict[str, Any]]) -> dict[str, str] | None:
    """Prometheus's relabelling of the actions the configuration uses (keep, drop, replace); None: dropped."""
    labels = dict(labels)
    for step in configs:
        action = step.get("action", "replace")
        value = step.get("separator", ";").join(labels.get(s, "") for s in step.get("source_labels", []))
        match = re.fullmatch(step.get("regex", "(.*)"), value)
        if action == "keep" and not match:
            return None
        if action == "drop" and match:
            return None
        if action == "replace" and match:
            # Prometheus's $1 / ${1} are Python's \g<1>.
            template = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", step.get("replacement", "$1"))
            result = match.expand(template)
            if result:
                labels[step["target_label"]] = result
            else:
                labels.pop(step["target_label"], None)
        elif action not in ("keep", "drop", "replace"):
            raise AssertionError(f"relabel action {action} is not simulated here")
    return labels


def discovered(obj: dict[str, Any], replica: int) -> list[dict[str, str]]:
    """What role: pod discovery yields for a running replica: one set of labels per container port."""
    template = obj["spec"]["template"]["metadata"]
    pod = f"{obj['metadata']['name']}-{replica}"
    base = {
        "__meta_kubernetes_namespace": obj["metadata"]["namespace"],
        "__meta_kubernetes_pod_name": pod,
        "__meta_kubernetes_pod_ip": f"10.244.0.{10 + replica}",
        "__meta_kubernetes_pod_phase": "Running",
        "__metrics_path__": "/metrics",
    }
    for key, value in template.get("labels", {}).items():
        base[f"__meta_kubernetes_pod_label_{re.sub(r'[^a-zA-Z0-9_]', '_', key)}"] = value
    for key, value in template.get("annotations", {}).items():
        base[f"__meta_kubernetes_pod_annotation_{re.sub(r'[^a-zA-Z0-9_]', '_', key)}"] = value
    return [
        {**base, "__address__": f"{base['__meta_kubernetes_pod_ip']}:{port['containerPort']}"}
        for container in pod_spec(obj)["containers"]
        for port in container.get("ports", [])
    ]


def scrape_targets(objects: Objects, job: dict[str, Any], replicas: int = 2) -> set[tuple]:
    """The targets of a kubernetes_sd job over every workload, with `replicas` pods each (deduplicated as
    Prometheus deduplicates identical targets)."""
    targets = set()
    for obj in objects:
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for replica in range(replicas):
            for labels in discovered(obj, replica):
                kept = relabel(labels, job.get("relabel_configs", []))
                if kept is not None:
                    shown = {k: v for k, v in kept.items() if not k.startswith("__meta_")}
                    shown.setdefault("job", job["job_name"])
                    targets.add(tuple(sorted(shown.items())))
    return targets


def k8s_config(objects: Objects) -> dict[str, Any]:
    return yaml.safe_load(generated(objects, "ConfigMap", "prometheus-config")["data"]["prometheus.yml"])


def test_every_annotated_pod_is_a_target_of_its_own(base_objects: Objects) -> None:
    jobs = {j["job_name"]: j for j in k8s_config(base_objects)["scrape_configs"]}
    targets = [dict(t) for t in scrape_targets(base_objects, jobs["pods"])]
    by_job: dict[str, list[dict[str, str]]] = {}
    for target in targets:
        by_job.setdefault(target["job"], []).append(target)
    # The jobs the alerts and dashboards name, as natively and in Compose (test_observability_prometheus.py).
    assert set(by_job) == set(METRICS_PORTS)
    for job, found in by_job.items():
        assert sorted(t["pod"] for t in found) == [f"{job}-0", f"{job}-1"], "one target per pod"
        for target in found:
            assert target["namespace"] == NAMESPACE
            assert target["__address__"].endswith(f":{METRICS_PORTS[job]}"), target
            assert target["__metrics_path__"] == "/metrics"


def test_rabbitmq_queue_metrics_come_from_each_broker_pod(base_objects: Objects) -> None:
    jobs = {j["job_name"]: j for j in k8s_config(base_objects)["scrape_configs"]}
    targets = [dict(t) for t in scrape_targets(base_objects, jobs["rabbitmq-queues"], replicas=1)]
    assert [(t["job"], t["pod"], t["__address__"].rsplit(":", 1)[1]) for t in targets] == [
        ("rabbitmq-queues", "rabbitmq-0", "15692")
    ]


def test_discovery_stays_in_the_namespace_the_role_grants(base_objects: Objects) -> None:
    role = find(base_objects, "Role", "prometheus-discovery")
    assert any(
        "pods" in rule["resources"] and {"list", "watch"} <= set(rule["verbs"]) for rule in role["rules"]
    )
    binding = find(base_objects, "RoleBinding", "prometheus-discovery")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    account = pod_spec(find(base_objects, "Deployment", "prometheus"))["serviceAccountName"]
    assert {"kind": "ServiceAccount", "name": account} in [
        {k: s[k] for k in ("kind", "name")} for s in binding["subjects"]
    ]
    for job in k8s_config(base_objects)["scrape_configs"]:
        for sd in job.get("kubernetes_sd_configs", []):
            assert sd["role"] == "pod" and sd["namespaces"]["names"] == [role["metadata"]["namespace"]]


@pytest.mark.parametrize("name", sorted(METRICS_PORTS))
def test_every_workload_serving_metrics_is_annotated_with_its_port(base_objects: Objects, name: str) -> None:
    obj = next(
        o
        for o in base_objects
        if o["kind"] in ("Deployment", "StatefulSet") and o["metadata"]["name"] == name
    )
    annotations = obj["spec"]["template"]["metadata"].get("annotations", {})
    ports = {p["containerPort"] for c in pod_spec(obj)["containers"] for p in c.get("ports", [])}
    assert METRICS_PORTS[name] in ports
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(METRICS_PORTS[name]),
        "prometheus.io/path": "/metrics",
    }


def test_only_workloads_serving_metrics_are_annotated(base_objects: Objects) -> None:
    annotated = {
        o["metadata"]["name"]
        for o in base_objects
        if o["kind"] in ("Deployment", "StatefulSet", "Job")
        and "prometheus.io/scrape" in o["spec"]["template"]["metadata"].get("annotations", {})
    }
    assert annotated == set(METRICS_PORTS)
