"""The JSON answers of the prediction routes (/predict, /predict/batch, V2)."""

from typing import Any

import orjson
from fastapi import Response


def json_response(content: Any) -> Response:
    """The answer is built from plain floats and strings: dump it directly with orjson, far cheaper than the
    standard library or pydantic re-validating it."""
    return Response(orjson.dumps(content), media_type="application/json")
