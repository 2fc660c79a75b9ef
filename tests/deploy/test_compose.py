"""docker-compose.yml, checked offline: it renders, and runs what the native run runs, the way it should."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from packaging_support import (
    APP_PROCESSES,
    REPO,
    native_argv,
    native_port,
    native_programs,
    require_tool,
    required_env,
    run,
    settings_env_vars,
)

ONE_SHOT = {"migrate", "replication-init"}
# One-shot too, in the `eventstore` profile: awaited only by the read side of deploy/compose/eventstore.yml.
EVENT_STORE_ONE_SHOT = {"event-store-init"}
EVENT_STORE_OVERRIDE = "deploy/compose/eventstore.yml"
INFRA_PASSWORD_VARS = {"POSTGRES_SUPERUSER_PASSWORD", "WRITE_DB_PASSWORD", "READ_DB_PASSWORD"}
# Migrations never touch the broker or serve requests: those settings keep their defaults there.
NOT_NEEDED_BY_MIGRATE = {"RABBITMQ_URL", "CQRS_API_TOKENS"}


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def long_running(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    one_shot = ONE_SHOT | EVENT_STORE_ONE_SHOT
    return {name: svc for name, svc in services(compose).items() if name not in one_shot}


def render(
    *files: str, env_file: Path | str = ".env.example", env: dict[str, str] | None = None
) -> dict[str, Any]:
    argv = [require_tool("docker-compose"), "--env-file", str(env_file)]
    for file in files or ("docker-compose.yml",):
        argv += ["-f", file]
    result = run([*argv, "config"], env=env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def env_example() -> dict[str, str]:
    return dict(
        line.split("=", 1)
        for line in (REPO / ".env.example").read_text().splitlines()
        if re.match(r"^\w+=", line)
    )


def test_a_fresh_clone_renders_without_env_with_the_documented_defaults(tmp_path: Path) -> None:
    """No .env at all: every setting takes its development default, which is the value .env.example shows."""
    (tmp_path / "empty.env").write_text("")
    clean = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    for files in (("docker-compose.yml",), ("docker-compose.yml", EVENT_STORE_OVERRIDE)):
        assert render(*files, env_file=tmp_path / "empty.env", env=clean) == render(*files, env=clean), files


def test_every_variable_the_file_interpolates_is_in_env_example() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{(\w+)", text))
    example = dict(
        line.split("=", 1)
        for line in (REPO / ".env.example").read_text().splitlines()
        if re.match(r"^\w+=", line)
    )
    assert used - example.keys() == set()


def test_the_app_services_run_the_native_commands(compose: dict[str, Any]) -> None:
    for process in APP_PROCESSES:
        assert services(compose)[process]["command"] == native_argv(process), process


def test_migrate_runs_both_sides_migrations_in_make_migrate_order(compose: dict[str, Any]) -> None:
    makefile = (REPO / "Makefile").read_text()
    native = re.findall(r"\$\(PY\) (-m \w+ migrate --no-input)\n", makefile.split("\nmigrate:", 1)[1])
    command = services(compose)["migrate"]["command"]
    assert command[:2] == ["sh", "-c"]
    assert command[2] == " && ".join(f"python {step}" for step in native[:2])


def test_ports_are_the_native_ones_inside_and_on_the_host(compose: dict[str, Any]) -> None:
    for process in APP_PROCESSES:
        port = native_port(process)
        published = services(compose)[process]["ports"]
        assert f"127.0.0.1:{port}:{port}/tcp" in published, (process, published)


def test_every_long_running_service_has_a_health_check_and_a_restart_policy(compose: dict[str, Any]) -> None:
    for name, svc in long_running(compose).items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
        assert not svc["healthcheck"].get("disable"), name
        assert svc.get("restart") == "unless-stopped", name


def test_one_shot_steps_do_not_restart_and_are_awaited_to_completion(compose: dict[str, Any]) -> None:
    for name in ONE_SHOT | EVENT_STORE_ONE_SHOT:
        assert services(compose)[name]["restart"] == "no"
    waited = {
        dep
        for svc in services(compose).values()
        for dep, condition in svc.get("depends_on", {}).items()
        if condition["condition"] == "service_completed_successfully"
    }
    assert waited == ONE_SHOT


def test_dependencies_wait_for_health_never_for_mere_start(compose: dict[str, Any]) -> None:
    for name, svc in services(compose).items():
        for dep, condition in svc.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert condition == {"condition": expected}, (name, dep)


def test_app_services_wait_for_their_database_the_migrations_and_the_broker(compose: dict[str, Any]) -> None:
    deps = {name: set(services(compose)[name]["depends_on"]) for name in APP_PROCESSES}
    assert {"write-db", "migrate"} <= deps["write-service"]
    assert {"write-db", "migrate", "rabbitmq"} <= deps["relay"]
    assert {"read-db", "migrate"} <= deps["read-service"]
    assert {"read-db", "migrate", "rabbitmq", "replication-init"} <= deps["projector"]


def test_health_checks_probe_what_each_process_serves(compose: dict[str, Any]) -> None:
    """Every app process: its readiness, /readyz on its port (the relay's and the projector's from their
    loops' heartbeats, on their metrics port; CONTRACT.md)."""
    for process in APP_PROCESSES:
        test = services(compose)[process]["healthcheck"]["test"]
        assert test == ["CMD", "cqrs-healthcheck", f"http://127.0.0.1:{native_port(process)}/readyz"]


def test_every_variable_the_settings_read_is_set_for_each_process(compose: dict[str, Any]) -> None:
    assert settings_env_vars()["all"], "the settings scan found nothing: packaging_support is broken"
    for process in APP_PROCESSES:
        env = services(compose)[process]["environment"]
        assert required_env(process) - env.keys() == set(), process
    migrate = services(compose)["migrate"]["environment"]
    needed = (required_env("migrate-write") | required_env("migrate-read")) - NOT_NEEDED_BY_MIGRATE
    assert needed - migrate.keys() == set()


def test_each_process_is_named_as_in_the_native_run(compose: dict[str, Any]) -> None:
    for process in APP_PROCESSES:
        native = native_programs()[process].environment["SERVICE_NAME"]
        assert services(compose)[process]["environment"]["SERVICE_NAME"] == native == process


def test_each_side_uses_its_own_database_and_broker_user(compose: dict[str, Any]) -> None:
    env = {name: services(compose)[name]["environment"] for name in APP_PROCESSES}
    for name in ("write-service", "relay"):
        assert env[name]["RABBITMQ_URL"].startswith("amqp://write-service:")
        assert "@write-db:5432/cqrs_write" in env[name]["WRITE_DATABASE_URL"]
        assert "READ_DATABASE_URL" not in env[name]
    for name in ("read-service", "projector"):
        assert env[name]["RABBITMQ_URL"].startswith("amqp://read-service:")
        assert "@read-db:5432/cqrs_read" in env[name]["READ_DATABASE_URL"]
        assert "WRITE_DATABASE_URL" not in env[name] and "CQRS_API_TOKENS" not in env[name]


def test_networks_separate_the_write_side_from_the_read_side(compose: dict[str, Any]) -> None:
    nets = {name: set(svc["networks"]) for name, svc in services(compose).items()}
    assert "read" not in nets["write-db"] | nets["write-service"] | nets["relay"]
    assert "write" not in nets["read-db"] | nets["read-service"] | nets["projector"]
    assert {"write", "read"} <= nets["rabbitmq"], "the broker joins both sides"
    assert nets["write-db"] & nets["read-db"] == {"replication"}, "read-db subscribes to write-db"
    scraped = {*APP_PROCESSES, "rabbitmq", "prometheus", "grafana"}
    assert {name for name, n in nets.items() if "monitoring" in n} == scraped


def test_state_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    data_paths = {
        "write-db": "/var/lib/postgresql/data",
        "read-db": "/var/lib/postgresql/data",
        "event-store": "/var/lib/postgresql/data",
        "rabbitmq": "/var/lib/rabbitmq",
        "prometheus": "/prometheus",
        "grafana": "/var/lib/grafana",
    }
    for name, path in data_paths.items():
        volumes = services(compose)[name]["volumes"]
        named = [v for v in volumes if v.split(":")[1] == path and not v.startswith("/")]
        assert named and named[0].split(":")[0] in compose["volumes"], name


def test_every_bind_mount_source_exists_in_the_repository(compose: dict[str, Any]) -> None:
    for name, svc in services(compose).items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("/"):
                assert Path(source).exists(), f"{name} mounts {source}, which does not exist"
                assert Path(source).is_relative_to(REPO)


def test_postgres_runs_with_the_native_clusters_settings(compose: dict[str, Any]) -> None:
    """The settings infra.sh gives each native cluster are the -c options of its container."""
    infra = (REPO / "deploy" / "local" / "infra.sh").read_text()
    for name, cluster in (("write-db", "WRITE_CLUSTER"), ("read-db", "READ_CLUSTER")):
        block = re.search(
            rf'ensure_cluster "\${cluster}".*?\n(?=\s*ensure_cluster|\s*#|\s*ensure_role)', infra, re.S
        )
        assert block, cluster
        native = set(re.findall(r"\b(\w+=\S+)", block.group(0)))
        assert native, cluster
        command = services(compose)[name]["command"]
        container = {command[i + 1] for i, arg in enumerate(command) if arg == "-c"}
        assert container == native, name
        assert compose["services"][name]["image"].startswith("postgres:15")


def test_the_event_store_is_behind_its_profile_only(compose: dict[str, Any]) -> None:
    profiled = {name for name, svc in services(compose).items() if svc.get("profiles")}
    assert profiled == {"event-store", "event-store-init"}
    for name in profiled:
        assert services(compose)[name]["profiles"] == ["eventstore"], name


def test_the_event_store_subscribes_with_the_replication_script_and_a_slot_of_its_own(
    compose: dict[str, Any],
) -> None:
    init, replication = services(compose)["event-store-init"], services(compose)["replication-init"]
    assert init["command"] == replication["command"] and init["volumes"] == replication["volumes"]
    env = init["environment"]
    assert (env["READ_DB_HOST"], env["READ_DB_NAME"]) == ("event-store", "cqrs_events")
    assert env["READ_DB_NAME"] == services(compose)["event-store"]["environment"]["APP_DB_NAME"]
    assert env["READ_DB_USER"] == services(compose)["event-store"]["environment"]["APP_DB_USER"]
    # Slots are named after subscriptions: read-db's default is <database>_events.
    assert env["SUBSCRIPTION"] != f"{replication['environment']['READ_DB_NAME']}_events"
    for key in ("WRITE_DB_HOST", "WRITE_DB_NAME", "REPLICATION_USER", "PGUSER"):
        assert env[key] == replication["environment"][key], key
    assert init["depends_on"] == {
        "replication-init": {"condition": "service_completed_successfully"},  # it creates the publication
        "write-db": {"condition": "service_healthy"},
        "event-store": {"condition": "service_healthy"},
    }
    assert set(init["networks"]) <= set(services(compose)["event-store"]["networks"])
    assert set(init["networks"]) & set(services(compose)["write-db"]["networks"])


def test_only_the_override_file_points_the_read_side_at_the_event_store(compose: dict[str, Any]) -> None:
    assert not [
        name
        for name, svc in services(compose).items()
        if "EVENT_STORE_DATABASE_URL" in svc.get("environment", {})
    ]
    result = run(
        [require_tool("docker-compose"), "--env-file", ".env.example", "-f", "docker-compose.yml",
         "-f", EVENT_STORE_OVERRIDE, "config"]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with_store = yaml.safe_load(result.stdout)["services"]
    pointed = {
        name for name, svc in with_store.items() if "EVENT_STORE_DATABASE_URL" in svc.get("environment", {})
    }
    assert pointed == {"read-service", "projector"}
    store = with_store["event-store"]["environment"]
    for name in pointed:
        url = urlparse(with_store[name]["environment"]["EVENT_STORE_DATABASE_URL"])
        assert (url.hostname, url.port, url.path) == ("event-store", 5432, f"/{store['APP_DB_NAME']}")
        assert (url.username, url.password) == (store["APP_DB_USER"], store["APP_DB_PASSWORD"])
        assert set(with_store[name]["networks"]) & set(with_store["event-store"]["networks"]), name
        assert with_store[name]["depends_on"]["event-store-init"] == {
            "condition": "service_completed_successfully"
        }
        # Everything else as without the override.
        rest = {k: v for k, v in with_store[name]["environment"].items() if k != "EVENT_STORE_DATABASE_URL"}
        assert rest == services(compose)[name]["environment"], name


def test_the_app_services_share_one_image_built_from_the_dockerfile(compose: dict[str, Any]) -> None:
    for name in (*APP_PROCESSES, "migrate"):
        svc = services(compose)[name]
        assert svc["image"] == "cqrs-lab:dev", name
        assert svc["build"]["dockerfile"] == "Dockerfile" and Path(svc["build"]["context"]) == REPO


def test_monitoring_mounts_the_observability_configuration(compose: dict[str, Any]) -> None:
    prometheus = services(compose)["prometheus"]
    config = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    mounted = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    relative = Path(config.split("=", 1)[1]).relative_to("/etc/prometheus")
    assert (Path(mounted["/etc/prometheus"]) / relative).is_file()

    grafana = services(compose)["grafana"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    providers = Path(mounted["/etc/grafana/provisioning"]) / "dashboards"
    for provider_file in providers.glob("*.yml"):
        for provider in yaml.safe_load(provider_file.read_text())["providers"]:
            assert provider["options"]["path"] in mounted, (
                "the dashboards are mounted where the provider looks"
            )
    datasources = Path(mounted["/etc/grafana/provisioning"]) / "datasources"
    for source_file in datasources.glob("*.yml"):
        for value in strings_in(yaml.safe_load(source_file.read_text())):
            for variable in re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", value):
                assert variable in grafana["environment"], f"{source_file.name} reads ${variable}"


@pytest.mark.parametrize("service", ["write-db", "read-db", "event-store"])
def test_postgres_health_checks_use_tcp(compose: dict[str, Any], service: str) -> None:
    """Over the socket, pg_isready would report the temporary server of first-start initialisation."""
    test = services(compose)[service]["healthcheck"]["test"]
    assert test[test.index("-h") + 1] == "127.0.0.1"


def test_secrets_default_only_to_the_development_values_of_env_example() -> None:
    """A secret is written in the Compose files only as the well-known lab value .env.example shows."""
    example = env_example()
    # ALLOW_DEVELOPMENT_SECRETS is a switch, not a secret: its default (true) is deliberate, see test_k8s.
    secrets = {k for k in example if re.search(r"PASSWORD|SECRET|TOKEN", k)} - {"ALLOW_DEVELOPMENT_SECRETS"}
    assert secrets >= INFRA_PASSWORD_VARS
    for file in ("docker-compose.yml", EVENT_STORE_OVERRIDE):
        text = (REPO / file).read_text()
        for key in secrets & set(re.findall(r"\$\{(\w+)", text)):
            assert text.count(f"${{{key}:-{example[key]}}}") == text.count(f"${{{key}"), (file, key)


def test_each_image_is_a_variable_whose_default_is_the_official_image(compose: dict[str, Any]) -> None:
    text = (REPO / "docker-compose.yml").read_text()
    images = re.findall(r"^\s+image: (.*)$", text, re.M)
    assert images and all(re.fullmatch(r"\$\{\w+_IMAGE:-[\w./:-]+\}|cqrs-lab:dev", i) for i in images), images
    official = {"write-db": "postgres:15-bookworm", "rabbitmq": "rabbitmq:3.13-management",
                "prometheus": "prom/prometheus:v3.5.0", "grafana": "grafana/grafana:12.1.0"}  # fmt: skip
    for name, image in official.items():
        assert services(compose)[name]["image"] == image, name
    assert services(compose)["migrate"]["build"]["args"] == {"PYTHON_IMAGE": "python:3.11-slim-bookworm"}


def test_the_local_image_run_leaves_only_grafana_out() -> None:
    """deploy/compose/local-images.yml puts Grafana (no Debian package) behind a profile, nothing else."""
    base = render("docker-compose.yml")
    local = render("docker-compose.yml", "deploy/compose/local-images.yml")
    assert local["services"]["grafana"]["profiles"] == ["grafana"]
    del local["services"]["grafana"]["profiles"]
    assert normalised(local) == normalised(base)


def normalised(rendered: dict[str, Any]) -> dict[str, Any]:
    """Merging files reorders the volumes and spells an empty network {} instead of null: no change."""
    for svc in rendered["services"].values():
        svc["networks"] = sorted(svc.get("networks", {}))
        svc["volumes"] = sorted(svc.get("volumes", []))
    return rendered


def strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return []
