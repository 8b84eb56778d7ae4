"""Tools of the reliability suite: the API tests' own fixtures and helpers (loaded by path, not copied), a
real server's log, a TCP proxy that plays a crashed service, and the checks every answer must pass."""

import contextlib
import importlib.util
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pandas as pd
import psutil
import sqlalchemy as sa
from reliability_report import REPORT

from penguins_pipeline.core import store
from penguins_pipeline.core.bulk import read_frames
from penguins_pipeline.core.schema import CLEAN_TABLE, RAW_TABLE

REPO = Path(__file__).resolve().parents[2]


def load_module(relative: str, name: str) -> ModuleType:
    """A test module of another folder (they are not packages), imported once under a name of its own."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / relative)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# running_api and free_port: the API tests' real server (the `versions` fixture is in tests/conftest.py).
API = load_module("tests/api/conftest.py", "api_test_fixtures")

# run_all(settings, run_id): data_pipeline's five steps in process, to set a store up before the real DAG run.
DATA_STEPS_TESTS = load_module("tests/airflow/data/test_data_steps.py", "airflow_data_steps_tests")

# What must never appear in an answer: a Python stack trace, source paths, or a secret the suite configured.
LEAK_PATTERNS = [re.compile(p) for p in (r"Traceback \(most recent", r'File "/[^"]+\.py", line \d+')]
SECRETS: set[str] = set()


def leaks(text: str) -> list[str]:
    found = [pattern.pattern for pattern in LEAK_PATTERNS if pattern.search(text)]
    return found + [f"secret {secret[:4]}…" for secret in SECRETS if secret in text]


def check_answer(
    status: int, text: str, content_type: str, what: str, unavailable: bool = False
) -> list[str]:
    """Problems of one answer (counted in the report): a server error (any 5xx, but a 503 where the test
    expects the deliberate "no usable model" answer: `unavailable`), a leak, or an error that is not JSON."""
    REPORT.count_status(status)
    failed = status >= 500 and not (unavailable and status == 503)
    problems = [f"{what}: {status} {text[:300]}"] if failed else []
    problems += [f"{what}: leaks {leak} in {text[:300]}" for leak in leaks(text)]
    if status >= 400 and text and not content_type.startswith("application/json"):
        problems.append(f"{what}: error answered as {content_type!r}, not JSON")
    return problems


def listening_pid(port: int) -> int:
    """The child process of this test session that listens on `port`."""
    for process in psutil.Process().children(recursive=True):
        try:
            connections = process.net_connections(kind="tcp")
        except psutil.Error:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections):
            return process.pid
    raise LookupError(f"no child process listens on port {port}")


def server_log(url: str) -> str:
    """What a server started by `running_api` printed so far (its stdout is an unlinked temporary file)."""
    pid = listening_pid(int(url.rsplit(":", 1)[1]))
    return Path(f"/proc/{pid}/fd/1").read_text(errors="replace")


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)


class TcpProxy:
    """127.0.0.1:`port` forwarded to `target_port`. `down()` closes the listener and cuts every open
    connection, as a crashed or unplugged server looks to its clients; `up()` listens again, same port."""

    def __init__(self, target_port: int | None = None, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or API.free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def up(self, target_port: int | None = None) -> None:
        self.target_port = target_port or self.target_port
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            doomed, self._open = self._open, set()
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def live_tables(url: str) -> dict[str, pd.DataFrame]:
    """penguins_raw and penguins_clean as a reader sees them (leftover staging tables are not read)."""
    engine = store.make_engine(url)
    try:
        with engine.connect() as conn:
            return {
                RAW_TABLE: pd.concat(
                    read_frames(conn, store.raw_table(RAW_TABLE), 100_000), ignore_index=True
                ),
                CLEAN_TABLE: pd.concat(
                    read_frames(conn, store.clean_table(CLEAN_TABLE), 100_000), ignore_index=True
                ),
            }
    finally:
        engine.dispose()


def table_names(url: str) -> list[str]:
    engine = store.make_engine(url)
    try:
        return sorted(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def assert_unchanged(before: dict[str, pd.DataFrame], url: str) -> None:
    for name, table in live_tables(url).items():
        pd.testing.assert_frame_equal(table, before[name], obj=name)


def when_staging_appears(url: str, table: str, then: Callable[[], None]) -> threading.Thread:
    """A thread that waits until a run starts filling a staging copy of `table`, then runs `then`."""

    def watch() -> None:
        wait_for(
            lambda: any(name.startswith(f"{table}__staging_") for name in table_names(url)),
            600,
            f"a staging copy of {table}",
            interval=0.05,
        )
        then()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread
