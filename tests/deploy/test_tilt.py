"""The Tiltfile, evaluated in Starlark with Tilt's functions recorded: what it builds, deploys and forwards
must exist, match the kustomize output, and agree with the kind cluster's port mappings."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging_support import (
    APP_PROCESSES,
    K8S,
    REPO,
    TiltCalls,
    TiltfileFailed,
    evaluate_tiltfile,
    kustomize_build,
    pod_spec,
)

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job"}


@pytest.fixture(scope="module")
def tilt() -> TiltCalls:
    return evaluate_tiltfile()


@pytest.fixture(scope="module")
def tilt_eventstore() -> TiltCalls:
    return evaluate_tiltfile({"eventstore": True})


def overlay_objects(calls: TiltCalls) -> tuple[dict[str, Any], ...]:
    (kustomize,) = calls.kustomize
    return kustomize_build(REPO / kustomize["path"])


def workloads(objects: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] in WORKLOAD_KINDS}


def kind_host_ports() -> set[int]:
    cluster = yaml.safe_load((K8S / "kind" / "cluster.yaml").read_text())
    return {m["hostPort"] for node in cluster["nodes"] for m in node.get("extraPortMappings", [])}


def test_it_deploys_the_kind_overlay_with_the_plain_command_the_tests_build(tilt: TiltCalls) -> None:
    (kustomize,) = tilt.kustomize
    assert kustomize["path"] == "deploy/k8s/overlays/kind"
    assert kustomize["flags"] == []
    assert tilt.k8s_yaml == [f"<kustomize {kustomize['path']}>"]


def test_it_only_talks_to_the_kind_cluster_of_cluster_yaml(tilt: TiltCalls) -> None:
    cluster = yaml.safe_load((K8S / "kind" / "cluster.yaml").read_text())
    assert tilt.allowed_contexts == [f"kind-{cluster['name']}"]


def test_every_path_it_names_exists(tilt: TiltCalls) -> None:
    (build,) = tilt.docker_builds
    paths = [build["context"], build["dockerfile"], *build["only"], tilt.kustomize[0]["path"]]
    for step in build["live_update"]:
        if step["step"] == "sync":
            paths.append(step["args"][0])
        elif step["step"] == "fall_back_on":
            paths.extend(step["args"][0])
    for resource in tilt.local_resources:
        # Files a command runs (kubectl's kind/name arguments are not paths).
        paths.extend(
            arg for arg in shlex.split(resource["cmd"]) if re.search(r"^[\w./-]+\.(py|sh|ya?ml)$", arg)
        )
    for path in paths:
        assert (REPO / path).exists(), path


def test_the_images_it_builds_are_the_images_the_manifests_run(tilt: TiltCalls) -> None:
    built = {b["ref"] for b in tilt.docker_builds}
    images = {
        c["image"]
        for o in workloads(overlay_objects(tilt)).values()
        for c in [*pod_spec(o).get("initContainers", []), *pod_spec(o)["containers"]]
    }
    own = {image for image in images if image.split(":")[0] in built}
    assert {image.split(":")[0] for image in own} == built == {"cqrs-lab"}
    for image in images - own:
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest", f"{image}: a public image pinned to a version"
    for process in APP_PROCESSES:
        deployment = workloads(overlay_objects(tilt))[process]
        assert pod_spec(deployment)["containers"][0]["image"].split(":")[0] in built


def test_the_build_context_is_what_dockerignore_lets_in(tilt: TiltCalls) -> None:
    (build,) = tilt.docker_builds
    allowed = [
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    assert sorted(build["only"]) == sorted(allowed)


def test_live_update_syncs_services_where_the_image_keeps_them_then_restarts(tilt: TiltCalls) -> None:
    (build,) = tilt.docker_builds
    steps = build["live_update"]
    assert [s["step"] for s in steps] == ["fall_back_on", "sync", "run"]
    dockerfile = (REPO / "Dockerfile").read_text()
    destination = re.search(r"^COPY --chown=\S+ services (\S+)$", dockerfile, flags=re.M).group(1)
    assert steps[1]["args"] == ["services", destination]
    assert f"PYTHONPATH={destination}" in dockerfile
    entrypoint = (REPO / "deploy" / "docker" / "entrypoint.sh").read_text()
    trigger = re.search(r"RESTART_TRIGGER_FILE:-([^}]+)}", entrypoint).group(1)
    assert steps[2]["args"] == [f"touch {trigger}"]
    assert "pyproject.toml" in steps[0]["args"][0], "a dependency change needs a rebuild"


def test_every_workload_is_a_labelled_resource(tilt: TiltCalls) -> None:
    named = {r["workload"]: r for r in tilt.resources}
    assert named.keys() == workloads(overlay_objects(tilt)).keys()
    for name, resource in named.items():
        assert resource.get("labels"), name


def test_resource_dependencies_exist_and_order_the_start(tilt: TiltCalls) -> None:
    names = {r["workload"] for r in tilt.resources} | {r["name"] for r in tilt.local_resources}
    for resource in [*tilt.resources, *tilt.local_resources]:
        assert set(resource.get("resource_deps", [])) <= names
    deps = {r["workload"]: set(r.get("resource_deps", [])) for r in tilt.resources}
    for process in APP_PROCESSES:
        assert "migrate" in deps[process], process
    assert {"write-db", "read-db"} <= deps["migrate"]
    assert "migrate" in deps["replication-init"]
    assert {"rabbitmq", "replication-init"} <= deps["projector"]


def test_port_forwards_reach_container_ports_and_never_collide(tilt: TiltCalls) -> None:
    objects = workloads(overlay_objects(tilt))
    taken = set(kind_host_ports())
    for resource in tilt.resources:
        for forward in resource.get("port_forwards", []):
            local, container = (int(p) for p in forward.split(":"))
            ports = {
                p["containerPort"]
                for c in pod_spec(objects[resource["workload"]])["containers"]
                for p in c.get("ports", [])
            }
            assert container in ports, (resource["workload"], forward)
            assert local not in taken, f"host port {local} is used twice"
            taken.add(local)


def test_links_point_at_ports_the_host_reaches(tilt: TiltCalls) -> None:
    reachable = set(kind_host_ports()) | {
        int(f.split(":")[0]) for r in tilt.resources for f in r.get("port_forwards", [])
    }
    links = [link for r in tilt.resources for link in r.get("links", [])]
    assert links
    for link in links:
        port = int(re.match(r"http://localhost:(\d+)", link["url"]).group(1))
        assert port in reachable, link


def test_the_load_generator_waits_for_the_system_and_runs_on_demand(tilt: TiltCalls) -> None:
    (loadgen,) = [r for r in tilt.local_resources if r["name"] == "load-generator"]
    assert loadgen["auto_init"] is False and loadgen["trigger_mode"] == "manual"
    assert set(APP_PROCESSES) <= set(loadgen["resource_deps"])
    argv = shlex.split(loadgen["cmd"])
    urls = {argv[i + 1] for i, a in enumerate(argv) if a.endswith("-url")}
    assert {int(u.rsplit(":", 1)[1]) for u in urls} <= kind_host_ports()


def test_the_eventstore_flag_adds_the_event_store(tilt_eventstore: TiltCalls) -> None:
    assert tilt_eventstore.kustomize[0]["path"] == "deploy/k8s/overlays/kind-eventstore"
    names = {r["workload"] for r in tilt_eventstore.resources}
    assert names == workloads(overlay_objects(tilt_eventstore)).keys()
    assert "event-store" in names


def test_every_block_is_commented() -> None:
    """Each top-level statement of the Tiltfile has a comment right above it (or above its group)."""
    lines = (REPO / "Tiltfile").read_text().splitlines()
    for number, line in enumerate(lines):
        if not line or line[0] in " #)]" or line.startswith("else"):
            continue
        above = number - 1
        while above >= 0 and lines[above] and not lines[above].startswith("#"):
            above -= 1  # statements of the same group share one comment
        assert above >= 0 and lines[above].startswith("#"), (
            f"Tiltfile line {number + 1} has no comment: {line}"
        )


def test_paths_in_the_tiltfile_exist_in_the_repository() -> None:
    text = (REPO / "Tiltfile").read_text()
    for path in re.findall(r"'((?:deploy|services)/[\w./-]+)'", text):
        assert Path(REPO / path).exists(), path


@pytest.mark.parametrize("context", ["kind-kind", "kind-other", "docker-desktop", "gke_project_zone_prod"])
def test_it_refuses_every_other_context_with_a_way_out(context: str) -> None:
    """allow_k8s_contexts lets every kind-* context through (Tilt deems them local), so the Tiltfile fails."""
    with pytest.raises(TiltfileFailed) as failed:
        evaluate_tiltfile(context=context)
    message = str(failed.value)
    assert context in message and "kind-cqrs-lab" in message
    assert "kind create cluster --config deploy/k8s/kind/cluster.yaml" in message


def test_it_asks_for_a_tilt_recent_enough(tilt: TiltCalls) -> None:
    (constraint,) = tilt.version_constraints
    assert re.fullmatch(r">=\d+\.\d+\.\d+", constraint)


def test_the_lab_has_buttons_that_run_only_when_pressed(tilt: TiltCalls) -> None:
    buttons = {r["name"]: r for r in tilt.local_resources if "lab" in r.get("labels", [])}
    assert set(buttons) == {
        "broker-stop",
        "broker-start",
        "verify-read-models",
        "rebuild-read-models",
        "poison-message",
    }
    cluster = yaml.safe_load((K8S / "kind" / "cluster.yaml").read_text())
    objects = overlay_objects(tilt)
    for name, button in buttons.items():
        assert button["auto_init"] is False and button["trigger_mode"] == "manual", name
        argv = shlex.split(button["cmd"])
        if argv[0] == "kubectl":
            # Never the current context: a button acts on the project's cluster or not at all.
            assert argv[1:5] == ["--context", f"kind-{cluster['name']}", "--namespace", "cqrs-lab"], name
            kind, _, workload = next(a for a in argv[5:] if "/" in a).partition("/")
            kinds = {"statefulset": "StatefulSet", "deploy": "Deployment"}
            assert workloads(objects)[workload]["kind"] == kinds[kind], name
    assert (
        "--replicas=0" in buttons["broker-stop"]["cmd"] and "--replicas=1" in buttons["broker-start"]["cmd"]
    )
    commands = REPO / "services" / "read_service" / "projections" / "management" / "commands"
    for name in ("verify-read-models", "rebuild-read-models"):
        command = shlex.split(buttons[name]["cmd"])[-1]
        assert (commands / f"{command}.py").exists(), name
    poison = buttons["poison-message"]
    assert shlex.split(poison["cmd"]) == ["make", "experiment", "NAME=poison-message"]
    amqp_port = int(poison["env"]["LAB_RABBITMQ_URL"].rsplit(":", 1)[1].split("/")[0])
    forwards = {f for r in tilt.resources for f in r.get("port_forwards", [])}
    assert f"{amqp_port}:5672" in forwards


def test_the_objects_it_groups_exist_in_the_build(tilt: TiltCalls) -> None:
    objects = {(o["metadata"]["name"], o["kind"].lower()) for o in overlay_objects(tilt)}
    for resource in tilt.resources:
        for selector in resource.get("objects", []):
            name, kind = selector.split(":")
            assert (name, kind) in objects, selector
