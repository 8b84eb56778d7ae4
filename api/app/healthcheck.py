"""The container's health probe, `python -m app.healthcheck`: exit 0 when this API answers /health.

A module rather than a `python -c` one-liner, so the Dockerfile and compose checks stay in exec form with no
space in any argument (Podman splits exec-form arguments on spaces) and need no curl in the slim image.
"""

import os
import sys
import urllib.request


def main() -> int:
    url = f"http://127.0.0.1:{os.environ.get('API_PORT', '8000')}/health"
    try:
        with urllib.request.urlopen(url, timeout=4) as answer:
            return 0 if answer.status == 200 else 1
    except OSError as err:
        print(f"{url}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
