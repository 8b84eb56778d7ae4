"""A TCP port on 127.0.0.1 that nothing listens on now, for a server started on the side.

Not a user entry point: the tests, the benchmarks and scripts/screenshots.py start their servers on such a
port, so they never clash with each other or with a stack running on the fixed ports.
"""

import socket


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
