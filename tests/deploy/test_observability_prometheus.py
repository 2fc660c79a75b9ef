"""Prometheus configuration and alert rules (observability/prometheus), checked with promtool, offline."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tests.observability_expressions import REPO, alert_rules, dashboard_module

PROMETHEUS = REPO / "observability" / "prometheus"
CONFIGS = ["prometheus.native.yml", "prometheus.compose.yml", "prometheus.k8s.yml"]
PROCESS_JOBS = {"write-service", "read-service", "relay", "projector", "reporting"} | {
    "rabbitmq",
    "rabbitmq-queues",
    "prometheus",
}
ALERT_THRESHOLDS = dashboard_module("dashboard_panels").ALERT_THRESHOLDS


def _promtool(promtool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, cwd=REPO)


def _config(name: str) -> dict:
    return yaml.safe_load((PROMETHEUS / name).read_text())


# prometheus.k8s.yml is checked as the cluster mounts it, in test_k8s_prometheus.py.
@pytest.mark.parametrize("name", [c for c in CONFIGS if "k8s" not in c])
def test_configuration_is_valid(promtool, name):
    result = _promtool(promtool, "check", "config", str(PROMETHEUS / name))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout  # the rules are loaded, relative to the config file


def test_alert_rules_are_valid(promtool):
    result = _promtool(promtool, "check", "rules", *map(str, sorted((PROMETHEUS / "rules").glob("*.yml"))))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rule_unit_tests_pass(promtool):
    result = _promtool(promtool, "test", "rules", *map(str, sorted((PROMETHEUS / "tests").glob("*.yml"))))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_that_sees_it_fire():
    fired = set()
    for path in (PROMETHEUS / "tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            fired |= {t["alertname"] for t in case.get("alert_rule_test", []) if t["exp_alerts"]}
    assert {r["alert"] for r in alert_rules()} <= fired


def test_every_alert_says_how_bad_and_what_to_do():
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_dashboard_thresholds_are_the_alert_thresholds():
    exprs = {r["alert"]: " ".join(r["expr"].split()) for r in alert_rules()}
    for alert, (literal, _value) in ALERT_THRESHOLDS.items():
        assert alert in exprs, alert
        assert (f"> {literal}" if literal else "== 1") in exprs[alert], (alert, exprs[alert])


def test_every_packaging_scrapes_the_same_jobs_on_the_contract_ports():
    """Natively and in Compose a job per process; in Kubernetes a pod's job is its app.kubernetes.io/name
    (test_k8s_prometheus.py checks the annotated pods give the same set)."""
    native, compose, kubernetes = (
        {job["job_name"]: job for job in _config(name)["scrape_configs"]} for name in CONFIGS
    )
    assert set(native) == set(compose) == PROCESS_JOBS
    assert set(kubernetes) == {"pods", "rabbitmq-queues", "prometheus"}
    ports = {
        "write-service": 8001,
        "read-service": 8002,
        "relay": 9101,
        "projector": 9102,
        "reporting": 9103,
        "rabbitmq": 15692,
    }
    for job, port in ports.items():
        if job == "projector":
            continue  # as many as run: below
        assert native[job]["static_configs"][0]["targets"] == [f"127.0.0.1:{port}"]
        if job != "rabbitmq":
            assert compose[job]["static_configs"][0]["targets"] == [f"{job}:{port}"]
    # Projectors: natively the list prometheus.sh writes for PROJECTORS, in Compose each container by name.
    assert native["projector"]["file_sd_configs"] == [{"files": ["../../var/prometheus/projectors.json"]}]
    (projectors,) = compose["projector"]["dns_sd_configs"]
    assert (projectors["names"], projectors["type"], projectors["port"]) == (["projector"], "A", 9102)
    # Compose finds the RabbitMQ nodes by name: the first always, the cluster profile's two more if running.
    for job in ("rabbitmq", "rabbitmq-queues"):
        (nodes,) = compose[job]["dns_sd_configs"]
        assert (nodes["names"], nodes["type"], nodes["port"]) == (
            ["rabbitmq", "rabbitmq-2", "rabbitmq-3"],
            "A",
            15692,
        )
        assert compose[job]["relabel_configs"] == [
            {"source_labels": ["__meta_dns_name"], "target_label": "instance", "replacement": "${1}:15692"}
        ]
    for config in (native, compose, kubernetes):
        assert config["rabbitmq-queues"]["metrics_path"] == "/metrics/detailed"
    assert native["rabbitmq-queues"]["static_configs"] == native["rabbitmq"]["static_configs"]


def test_native_prometheus_is_given_every_projector_make_run_starts(tmp_path):
    """prometheus.sh writes the projector job's target list from PROJECTORS before it starts Prometheus: the
    ports supervisord gives them (91<n>2)."""
    script = tmp_path / "deploy" / "local" / "prometheus.sh"
    script.parent.mkdir(parents=True)
    script.write_text((REPO / "deploy" / "local" / "prometheus.sh").read_text())
    fake = tmp_path / "bin" / "prometheus"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho started "$@"\n')
    fake.chmod(0o755)
    environment = {"PATH": f"{fake.parent}:/usr/bin:/bin", "PROJECTORS": "3", "LOG_FORMAT": "json"}
    result = subprocess.run(
        ["bash", str(script)], env=environment, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert f"--config.file={tmp_path}/observability/prometheus/prometheus.native.yml" in result.stdout
    listed = json.loads((tmp_path / "var" / "prometheus" / "projectors.json").read_text())
    assert listed == [{"targets": ["127.0.0.1:9102", "127.0.0.1:9112", "127.0.0.1:9122"]}]
    supervisord = (REPO / "deploy" / "local" / "supervisord.conf").read_text()
    assert 'PROJECTOR_METRICS_PORT="91%(process_num)d2"' in supervisord
