"""Helpers and fixtures of the packaging checks (test_compose*, test_k8s*, test_tilt*, test_dockerfile*): the
rendered Compose file, the kustomize builds, the evaluated Tiltfile, and what the code itself says (the
environment variables the settings read, the native commands). conftest.py imports the fixtures.

Nothing here needs a Docker engine, a cluster or the network: `docker-compose config` and `kubectl kustomize`
only read files. A missing tool fails the tests with the install step (deploy/local/prerequisites.sh, run by
`make test-deploy`); it never skips them.
"""

from __future__ import annotations

import ast
import configparser
import functools
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from devkit.processes import free_port

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "services"
CONFIG_MODULE = SERVICES / "cqrs_common" / "config.py"
K8S = REPO / "deploy" / "k8s"
OVERLAYS = sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))

# The app processes, and which code's settings each one reads (see `settings_env_vars`).
APP_PROCESSES = ("write-service", "read-service", "relay", "projector", "reporting")
PROCESS_SCOPES: dict[str, frozenset[str]] = {
    "write-service": frozenset({"all", "web", "write"}),
    "read-service": frozenset({"all", "web", "read", "read-api"}),
    "relay": frozenset({"all", "write", "cmd:relay"}),
    "projector": frozenset({"all", "read", "cmd:projector"}),
    "reporting": frozenset({"all", "read", "cmd:reporting"}),
    "migrate-write": frozenset({"all", "write"}),
    "migrate-read": frozenset({"all", "read"}),
}
# Variables the code reads that a packaging deliberately leaves unset, and why.
NOT_SET_ON_PURPOSE = {
    "BIND": "gunicorn's --bind on the command line decides the address",
}


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: run `bash deploy/local/prerequisites.sh` (make test-deploy does)"
        )
    return path


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, **kwargs)


# ---------------------------------------------------------------------------------------------- the code


def _config_aliases(tree: ast.Module) -> tuple[set[str], dict[str, str]]:
    """Names bound to the config module, and names imported from it (local name -> function)."""
    modules: set[str] = set()
    functions: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "cqrs_common":
            modules |= {a.asname or a.name for a in node.names if a.name == "config"}
        elif isinstance(node, ast.ImportFrom) and node.module == "cqrs_common.config":
            functions |= {a.asname or a.name: a.name for a in node.names}
        elif isinstance(node, ast.Import):
            modules |= {a.asname for a in node.names if a.name == "cqrs_common.config" and a.asname}
    return modules, functions


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


@dataclass(frozen=True)
class SettingReader:
    """A function of config.py: the variables it reads itself, and whether it reads one its caller names."""

    names: frozenset[str]
    takes_name: bool


def config_readers() -> dict[str, SettingReader]:
    """config.py's functions, each with the environment variables it reads (following calls between them)."""
    tree = ast.parse(CONFIG_MODULE.read_text())
    functions = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    direct: dict[str, set[str]] = {}
    takes_name: dict[str, bool] = {}
    calls: dict[str, set[str]] = {}
    for name, function in functions.items():
        params = {a.arg for a in function.args.args}
        direct[name], takes_name[name], calls[name] = set(), False, set()
        for node in ast.walk(function):
            if not isinstance(node, ast.Call):
                continue
            if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
                if node.func.value.id == "env" and node.args:
                    if (var := _literal(node.args[0])) is not None:
                        direct[name].add(var)
                    elif isinstance(node.args[0], ast.Name) and node.args[0].id in params:
                        takes_name[name] = True
            elif isinstance(node.func, ast.Name) and node.func.id in functions:
                calls[name].add(node.func.id)
    changed = True
    while changed:  # follow config.py's functions calling each other
        changed = False
        for name in functions:
            for callee in calls[name]:
                if not direct[callee] <= direct[name] or (takes_name[callee] and not takes_name[name]):
                    direct[name] |= direct[callee]
                    changed = True
    return {n: SettingReader(frozenset(direct[n]), takes_name[n]) for n in functions}


def _scope(path: Path) -> str:
    relative = path.relative_to(SERVICES)
    if relative.parts[0] == "cqrs_common":
        return "web" if relative.name == "gunicorn_conf.py" else "all"
    if relative.parts[:2] in (("read_service", "queries"), ("read_service", "lab_view")):
        return "read-api"  # the query API and the live view: only read-service's gunicorn imports them
    if "commands" in relative.parts and relative.parts[-2] == "commands":
        return f"cmd:{relative.stem}"
    return {"write_service": "write", "read_service": "read"}[relative.parts[0]]


def _env_reads(tree: ast.Module, readers: dict[str, SettingReader]) -> set[str]:
    modules, imported = _config_aliases(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            reader = None
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id in modules
            ):
                reader = readers.get(func.attr)
            elif isinstance(func, ast.Name) and func.id in imported:
                reader = readers.get(imported[func.id])
            if reader is not None:
                found |= reader.names
                if reader.takes_name and node.args and (var := _literal(node.args[0])) is not None:
                    found.add(var)
            # os.environ.get("X") and os.getenv("X")
            if isinstance(func, ast.Attribute) and func.attr in ("get", "getenv") and node.args:
                target = ast.unparse(func.value)
                if target in ("os.environ", "os") and (var := _literal(node.args[0])) is not None:
                    found.add(var)
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and ast.unparse(node.value) == "os.environ"
            and (var := _literal(node.slice)) is not None
        ):
            found.add(var)
    return found


@functools.cache
def settings_env_vars() -> dict[str, frozenset[str]]:
    """Every environment variable the code reads, by scope.

    Scopes: `all` (cqrs_common, read by every Django process), `web` (gunicorn_conf.py: the two gunicorn
    services), `write` / `read` (each side's codebase: its settings, shared by its web service and worker),
    `read-api` (read_service/queries and lab_view: the query API and the live view, which only read-service
    serves), `cmd:<name>` (a
    management command: only the process it is, e.g. the relay). config.py is the one place
    that reads the environment; a call of one of its functions counts where the call is, so a variable added
    there and used somewhere is found without changing this test.
    """
    readers = config_readers()
    scopes: dict[str, set[str]] = {}
    for path in SERVICES.rglob("*.py"):
        if "migrations" in path.parts or path == CONFIG_MODULE or path.parts[-2].endswith(".egg-info"):
            continue
        found = _env_reads(ast.parse(path.read_text()), readers)
        scopes.setdefault(_scope(path), set()).update(found)
    # Module-level reads of config.py itself run in every process.
    config_tree = ast.parse(CONFIG_MODULE.read_text())
    module_level = ast.Module(
        body=[n for n in config_tree.body if not isinstance(n, ast.FunctionDef)], type_ignores=[]
    )
    for node in ast.walk(module_level):
        is_read = isinstance(node, ast.Call) and ast.unparse(node.func).startswith("env.") and node.args
        if is_read and (var := _literal(node.args[0])) is not None:
            scopes.setdefault("all", set()).add(var)
    return {scope: frozenset(names - NOT_SET_ON_PURPOSE.keys()) for scope, names in scopes.items()}


def required_env(process: str) -> frozenset[str]:
    """The variables `process` reads (PROCESS_SCOPES), all of which a packaging must set."""
    scopes = settings_env_vars()
    return frozenset().union(*(scopes.get(scope, frozenset()) for scope in PROCESS_SCOPES[process]))


@dataclass(frozen=True)
class NativeProgram:
    argv: list[str]
    environment: dict[str, str]


@functools.cache
def native_programs() -> dict[str, NativeProgram]:
    """deploy/local/supervisord.conf's programs, as containers must run them (venv path stripped)."""
    parser = configparser.RawConfigParser()
    parser.read(REPO / "deploy" / "local" / "supervisord.conf")
    programs = {}
    for section in parser.sections():
        if not section.startswith("program:"):
            continue
        argv = shlex.split(parser.get(section, "command"))
        argv[0] = Path(argv[0]).name  # %(here)s/../../.venv/bin/gunicorn -> gunicorn
        environment = dict(re.findall(r'(\w+)="([^"]*)"', parser.get(section, "environment", fallback="")))
        programs[section.removeprefix("program:")] = NativeProgram(argv, environment)
    return programs


@functools.cache
def native_binds() -> dict[str, str]:
    """The Makefile's defaults for the binds supervisord.conf interpolates (WRITE_SERVICE_BIND, ...)."""
    makefile = (REPO / "Makefile").read_text()
    return dict(re.findall(r"^export (\w+_BIND) \?= (\S+)$", makefile, flags=re.M))


def native_argv(program: str) -> list[str]:
    """The native command with its bind reduced to 0.0.0.0:<port>, the form containers use."""
    argv = []
    for arg in native_programs()[program].argv:
        match = re.fullmatch(r"%\(ENV_(\w+)\)s", arg)
        if match:
            port = native_binds()[match.group(1)].rsplit(":", 1)[1]
            arg = f"0.0.0.0:{port}"
        argv.append(arg)
    return argv


def native_port(program: str) -> int:
    """The port a process listens on natively: its bind (web services) or its metrics port (CONTRACT.md)."""
    argv = native_argv(program)
    if "--bind" in argv:
        return int(argv[argv.index("--bind") + 1].rsplit(":", 1)[1])
    return {"relay": 9101, "projector": 9102, "reporting": 9103}[program]


# ----------------------------------------------------------------------------------------------- Compose


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    """`docker-compose config` with .env.example: the file as Compose resolves it (anchors, variables)."""
    tool = require_tool("docker-compose")
    result = run([tool, "--env-file", ".env.example", "-f", "docker-compose.yml", "config"])
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


# ------------------------------------------------------------------------------------------------ kustomize


@functools.cache
def kustomize_build(directory: Path) -> tuple[dict[str, Any], ...]:
    tool = require_tool("kubectl")
    # The plain command, as the README and the Tiltfile run it: no --load-restrictor.
    result = run([tool, "kustomize", str(directory.relative_to(REPO))])
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@pytest.fixture(scope="session")
def base_objects() -> tuple[dict[str, Any], ...]:
    return kustomize_build(K8S / "base")


def find(objects: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(f"no {kind} {name} in the build")


# The kind of workload that runs each app process in Kubernetes: the projector is a StatefulSet, its pods'
# names giving each its ordinal (docs/decisions/0008).
APP_WORKLOAD_KINDS = {**dict.fromkeys(APP_PROCESSES, "Deployment"), "projector": "StatefulSet"}


def app_workload(objects: tuple[dict[str, Any], ...], process: str) -> dict[str, Any]:
    """The Deployment or StatefulSet that runs an app process."""
    return find(objects, APP_WORKLOAD_KINDS[process], process)


def generated(objects: tuple[dict[str, Any], ...], kind: str, prefix: str) -> dict[str, Any]:
    """A ConfigMap or Secret made by a generator (its name carries a content hash)."""
    matches = [
        o
        for o in objects
        if o["kind"] == kind and re.fullmatch(rf"{prefix}-[a-z0-9]{{10}}", o["metadata"]["name"])
    ]
    assert len(matches) == 1, f"expected one generated {kind} {prefix}, found {len(matches)}"
    return matches[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod template's spec of a workload; a CronJob's is inside its Job template."""
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    return spec["template"]["spec"]


def container_env(objects: tuple[dict[str, Any], ...], container: dict[str, Any]) -> dict[str, str | None]:
    """A container's environment: envFrom ConfigMaps and Secrets (decoded) and env (None for valueFrom)."""
    import base64

    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            data = find(objects, "Secret", source["secretRef"]["name"]).get("data", {})
            env.update({k: base64.b64decode(v).decode() for k, v in data.items()})
    for item in container.get("env", []):
        env[item["name"]] = item.get("value")
    return env


# ------------------------------------------------------------------------------------------------- Tilt


@dataclass
class TiltCalls:
    """What the Tiltfile asked Tilt to do, recorded by stubs of Tilt's built-ins."""

    docker_builds: list[dict[str, Any]]
    k8s_yaml: list[Any]
    kustomize: list[dict[str, Any]]
    resources: list[dict[str, Any]]
    local_resources: list[dict[str, Any]]
    allowed_contexts: list[Any]
    version_constraints: list[str]


class TiltfileFailed(Exception):
    """The Tiltfile called fail(): Tilt stops with this message and deploys nothing."""


def evaluate_tiltfile(args: dict[str, Any] | None = None, context: str = "kind-cqrs-lab") -> TiltCalls:
    """Runs the Tiltfile in starlark-pyo3 with Tilt's functions replaced by recorders, `context` being the
    current kube context; raises TiltfileFailed where the Tiltfile calls fail()."""
    import starlark

    calls = TiltCalls([], [], [], [], [], [], [])
    config_values = dict(args or {})

    def recorder(into: list[dict[str, Any]], *names: str) -> Callable[..., dict[str, Any]]:
        def record(*positional: Any, **keywords: Any) -> dict[str, Any]:
            entry = dict(zip(names, positional, strict=False)) | keywords
            into.append(entry)
            return entry

        return record

    def kustomize(path: str, kustomize_bin: str | None = None, flags: list[str] | None = None) -> str:
        calls.kustomize.append({"path": path, "flags": list(flags or [])})
        return f"<kustomize {path}>"

    def k8s_yaml(yaml_: Any, allow_duplicates: bool = False) -> None:
        calls.k8s_yaml.append(yaml_)

    def live_update_step(kind: str) -> Callable[..., dict[str, Any]]:
        return lambda *a, **k: {"step": kind, "args": list(a), **k}

    def define_bool(name: str, args: bool = False, usage: str = "") -> None:
        config_values.setdefault(name, False)

    def parse() -> dict[str, Any]:
        return dict(config_values)

    def link(url: str, name: str = "") -> dict[str, str]:
        return {"url": url, "name": name}

    module = starlark.Module()
    module.add_callable("_config_define_bool", define_bool)
    module.add_callable("_config_parse", parse)
    module.add_callable("allow_k8s_contexts", lambda contexts: calls.allowed_contexts.append(contexts))
    module.add_callable("k8s_context", lambda: context)
    module.add_callable(
        "version_settings", lambda constraint="", **_: calls.version_constraints.append(constraint)
    )

    def fail(message: str) -> None:
        raise TiltfileFailed(message)

    module.add_callable("fail", fail)
    module.add_callable("docker_build", recorder(calls.docker_builds, "ref", "context"))
    module.add_callable("kustomize", kustomize)
    module.add_callable("k8s_yaml", k8s_yaml)
    module.add_callable("k8s_resource", recorder(calls.resources, "workload"))
    module.add_callable("local_resource", recorder(calls.local_resources, "name", "cmd"))
    module.add_callable("sync", live_update_step("sync"))
    module.add_callable("run", live_update_step("run"))
    module.add_callable("fall_back_on", live_update_step("fall_back_on"))
    module.add_callable("link", link)
    module["TRIGGER_MODE_MANUAL"] = "manual"
    module["TRIGGER_MODE_AUTO"] = "auto"

    # Tilt's `config` is a struct of functions; Python values cross into Starlark as data, so build it there.
    # Tilt allows `if` at the top level of a Tiltfile, as Starlark's extended dialect does.
    extensions = [starlark.LibraryExtension.StructType, starlark.LibraryExtension.Print]
    globals_ = starlark.Globals.extended_by(extensions)
    prelude = "config = struct(define_bool = _config_define_bool, parse = _config_parse)\n"
    starlark.eval(module, starlark.parse("prelude", prelude, starlark.Dialect.extended()), globals_)
    source = (REPO / "Tiltfile").read_text()
    try:
        starlark.eval(module, starlark.parse("Tiltfile", source, starlark.Dialect.extended()), globals_)
    except starlark.StarlarkError as error:
        # An exception raised in a Python callable reaches here wrapped in Starlark's error.
        if "TiltfileFailed" in str(error):
            raise TiltfileFailed(str(error)) from error
        raise
    return calls


# --------------------------------------------------------------------------------------- private PostgreSQL


@dataclass(frozen=True)
class PrivatePostgres:
    port: int
    socket_dir: Path

    def psql(self, database: str, sql: str) -> str:
        result = run(
            [
                "psql",
                "-X",
                "-q",
                "-tA",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                sql,
            ],
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[Callable[..., PrivatePostgres]]:
    """Starts throwaway PostgreSQL 15 servers on free ports (trust auth on 127.0.0.1), stopped afterwards."""
    import os

    started: list[Path] = []
    pg_bin = Path("/usr/lib/postgresql/15/bin")
    if not (pg_bin / "initdb").exists():
        pytest.fail("PostgreSQL 15 server binaries are missing: deploy/local/infra.sh installs them")

    def start(*settings: str) -> PrivatePostgres:
        # Not under pytest's tmp_path: its folders are private to root, and the server runs as postgres.
        root = Path(tempfile.mkdtemp(prefix="cqrs-deploy-pg-"))
        os.chown(root, *_postgres_ids())
        port = free_port()
        as_postgres = ["runuser", "-u", "postgres", "--"]
        init = run(
            [
                *as_postgres,
                str(pg_bin / "initdb"),
                "-D",
                str(root / "data"),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
        assert init.returncode == 0, init.stderr
        options = " ".join(
            [
                f"-p {port}",
                f"-k {root}",
                "-c listen_addresses=127.0.0.1",
                "-c fsync=off",
                *(f"-c {s}" for s in settings),
            ]
        )
        start_ = run(
            [
                *as_postgres,
                str(pg_bin / "pg_ctl"),
                "-D",
                str(root / "data"),
                "-l",
                str(root / "log"),
                "-o",
                options,
                "-w",
                "start",
            ]
        )
        assert start_.returncode == 0, start_.stderr + (root / "log").read_text()
        started.append(root)
        return PrivatePostgres(port, root)

    yield start
    for root in started:
        run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(pg_bin / "pg_ctl"),
                "-D",
                str(root / "data"),
                "-m",
                "immediate",
                "stop",
            ]
        )
        shutil.rmtree(root, ignore_errors=True)


def _postgres_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid
