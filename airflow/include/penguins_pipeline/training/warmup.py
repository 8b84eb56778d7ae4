"""Telling the API that a new version is promoted, so it serves it now rather than at its next poll."""

import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from penguins_pipeline.core.task_runner import StopRequested

log = logging.getLogger(__name__)

# Worth another try: the API is starting, restarting or briefly overloaded. Any other answer (401/403 wrong
# token, 404 wrong URL) will not change by waiting.
RETRYABLE_STATUS = {429, 500, 502, 503, 504}


class WarmupError(RuntimeError):
    pass


def warm_up(
    api_url: str,
    token: str | None,
    attempts: int,
    backoff_seconds: float,
    timeout_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any] | None:
    """POST {api_url}/warmup with retries and doubling waits; the API's answer, or None when API_URL is empty
    or a SIGTERM arrives meanwhile (the stack is stopping: no point waiting for an API that is going away).

    Failing is loud on purpose, but harmless: the version is already promoted and every API worker loads it
    by itself within seconds.
    """
    if not api_url:
        log.info("API_URL is empty: no warmup call; the API picks up the promoted version by itself")
        return None
    try:
        return _post_with_retries(api_url, token, attempts, backoff_seconds, timeout_seconds, sleep)
    except StopRequested:  # a SIGTERM, in the task's run_step
        log.warning(
            "SIGTERM: stopping, no more warmup calls; the version is promoted and the API loads it by itself"
        )
        return None


def _post_with_retries(
    api_url: str,
    token: str | None,
    attempts: int,
    backoff_seconds: float,
    timeout_seconds: float,
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    url = f"{api_url.rstrip('/')}/warmup"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    problem = ""
    for attempt in range(1, attempts + 1):
        try:
            response = httpx.post(url, headers=headers, timeout=timeout_seconds)
        except httpx.TransportError as err:
            problem = f"{type(err).__name__}: {err}"
        else:
            if response.is_success:
                log.info("POST %s answered %s", url, response.text)
                return response.json()
            problem = f"HTTP {response.status_code}: {response.text[:300]}"
            if response.status_code not in RETRYABLE_STATUS:
                hint = (
                    " (check that WARMUP_TOKEN matches the API's)"
                    if response.status_code in (401, 403)
                    else ""
                )
                raise WarmupError(f"POST {url} was refused, {problem}{hint}")
        if attempt < attempts:
            wait = backoff_seconds * 2 ** (attempt - 1)
            log.warning(
                "POST %s attempt %d/%d failed (%s); retrying in %.1f s", url, attempt, attempts, problem, wait
            )
            sleep(wait)
    raise WarmupError(
        f"POST {url} failed after {attempts} attempts ({problem}). The new version is promoted anyway: the "
        "API loads it by itself within seconds. Check that the API runs and that API_URL is right."
    )
