"""`make bench` is not part of `make test`: these keep the serving benchmark's own parts from breaking
unnoticed until someone benchmarks."""

import sys
from pathlib import Path

import serving
from free_port import free_port


def test_the_hello_baseline_starts_and_answers_as_the_benchmark_starts_it(tmp_path: Path) -> None:
    port = free_port()
    hello = serving.start_hello(port, tmp_path / "hello.log")
    try:
        url = f"http://127.0.0.1:{port}/predict"
        assert serving.wait_for_200(url, serving.real_penguins(1)[0], hello, timeout=60) > 0
    except RuntimeError:
        print((tmp_path / "hello.log").read_text(), file=sys.stderr)
        raise
    finally:
        hello.terminate()
        hello.wait(timeout=15)
