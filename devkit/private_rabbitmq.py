"""A private RabbitMQ node for tests that need a broker outage; the shared broker is never touched.

The node has its own name, ports, data and log directories, one plugin (the consistent-hash exchange the
projector's partitions need) and its own (empty) configuration,
so nothing of /etc/rabbitmq applies (the shared node's listener there would clash). The Erlang cookie is the
user's, as for the shared node, so `rabbitmqctl -n <node>` reaches it. Its only user is the built-in `guest`
(local connections only), which may do everything: permissions are tested against the shared broker.
Debian's wrapper scripts run the server and rabbitmqctl as the `rabbitmq` user when called by root, so the
node's directory belongs to that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from devkit.processes import free_port

BOOT_TIMEOUT_SECONDS = 90


# The one plugin the topology needs: the projector's partitions are a consistent-hash exchange.
PLUGINS = ("rabbitmq_consistent_hash_exchange",)


def enabled_plugins(*more: str) -> str:
    """An enabled_plugins file's content: the topology's plugins and `more`."""
    return f"[{','.join((*PLUGINS, *more))}].\n"


class PrivateRabbitMQ:
    def __init__(self) -> None:
        self.base = base = Path(tempfile.mkdtemp(prefix="cqrs-test-rabbitmq-"))
        self.nodename = f"cqrs-test-{uuid.uuid4().hex[:8]}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self._server: subprocess.Popen[bytes] | None = None
        (base / "mnesia").mkdir(parents=True, exist_ok=True)
        (base / "log").mkdir(exist_ok=True)
        (base / "enabled_plugins").write_text(enabled_plugins())
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (base / "rabbitmq-env.conf").write_text("")
        if os.geteuid() == 0:
            owner = pwd.getpwnam("rabbitmq")
            for path in [base, *base.rglob("*")]:
                os.chown(path, owner.pw_uid, owner.pw_gid)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(self.base / "rabbitmq.pid"),
        }

    def _ctl(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            ["rabbitmqctl", "-q", "-n", self.nodename, *args],
            env=self._env(),
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
        )

    def start(self) -> PrivateRabbitMQ:
        """Boots the node (keeping its data from an earlier run) and waits until it serves AMQP."""
        self._server = subprocess.Popen(
            ["rabbitmq-server"],
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            self._ctl(
                "wait",
                str(self.base / "rabbitmq.pid"),
                "--timeout",
                str(BOOT_TIMEOUT_SECONDS),
                timeout=BOOT_TIMEOUT_SECONDS + 10,
            )
            self._ctl("await_startup", timeout=BOOT_TIMEOUT_SECONDS)
        except BaseException:
            self.stop()
            raise
        return self

    def set_memory_high_watermark(self, fraction: float) -> None:
        """0 raises the memory alarm at once (RabbitMQ blocks every publishing connection); 0.4, the default,
        clears it."""
        self._ctl("set_vm_memory_high_watermark", str(fraction))

    def stop(self) -> None:
        """Stops the whole node (clients see their connections drop); the data directory stays."""
        server, self._server = self._server, None
        if server is None:
            return
        with contextlib.suppress(subprocess.SubprocessError, OSError):  # then the process is killed below
            self._ctl("stop", timeout=60)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
