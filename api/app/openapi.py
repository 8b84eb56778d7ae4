"""The OpenAPI schema as the server really validates: island and sex as the served model's categories and
/feedback's species as its classes (they change with a promotion), and /warmup's bearer token only when
WARMUP_TOKEN is set."""

import copy
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from functools import cache, lru_cache
from typing import Any

from fastapi import FastAPI

from app.core.config import Settings
from app.routers import inference_v2
from penguins_contract import CATEGORICAL_FEATURES

Schema = dict[str, Any]


@cache
def _unicode_tables() -> tuple[dict[str, str], str]:
    """The characters that `str.lower()` (how the server matches a category) maps to each lower case, and
    every character `str.strip()` removes. One pass over Unicode, once per process: case mappings such as
    KELVIN SIGN -> k cannot be guessed from `upper()`. Only cased characters are kept (a character that is its
    own lower case matches itself alone): a table of every character held hundreds of megabytes for good."""
    cased: defaultdict[str, str] = defaultdict(str)
    spaces = ""
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if (lower := char.lower()) != char:
            cased[lower] += char
        if char.isspace():
            spaces += char
    same_lower = {
        lower: "".join(sorted(chars + lower if len(lower) == 1 and lower.lower() == lower else chars))
        for lower, chars in cased.items()
    }
    return same_lower, spaces


def _char_class(chars: str) -> str:
    """A regex character class that JSON Schema (ECMA-262) and Python read alike: every member as \\uXXXX."""
    return "[" + "".join(f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else re.escape(c) for c in chars) + "]"


def category_pattern(categories: Sequence[str]) -> str:
    """A JSON-Schema pattern that accepts exactly what the server does: one of `categories` in any case,
    surrounded by any whitespace (JSON Schema has no case-insensitive flag)."""
    same_lower, spaces = _unicode_tables()
    names = ("".join(_char_class(same_lower.get(c, c)) for c in name.lower()) for name in categories)
    space = _char_class(spaces)
    return f"^{space}*(?:{'|'.join(names)}){space}*$"


def install(app: FastAPI, settings: Settings) -> None:
    """Replace app.openapi: FastAPI's schema, told the served model's categories and the warmup's security."""
    fastapi_schema = app.openapi

    @cache
    def base() -> Schema:
        schema = fastapi_schema()
        inference_v2.document(schema)
        _feedback_one_or_many(schema)
        if settings.warmup_token is None:
            _drop_warmup_auth(schema)
        return schema

    @lru_cache(maxsize=4)
    def for_categories(categories: tuple[tuple[str, ...], ...], classes: tuple[str, ...]) -> Schema:
        schema = copy.deepcopy(base())
        components = schema["components"]["schemas"]
        fields = [
            *(
                (components["PenguinFeatures"]["properties"][field], names)
                for field, names in zip(CATEGORICAL_FEATURES, categories, strict=True)
            ),
            (components["FeedbackLabel"]["properties"]["species"], classes),
        ]
        for field, names in fields:
            field["pattern"] = category_pattern(names)
            field["description"] = f"One of {', '.join(names)} (any case)"
        return schema

    def openapi() -> Schema:
        store = getattr(app.state, "model_store", None)
        if store is None or store.predictor is None:
            return base()  # no model yet: every prediction is a 503, whatever the categories
        categories = store.predictor.encoder.categories
        return for_categories(
            tuple(categories[field] for field in CATEGORICAL_FEATURES), store.predictor.classes
        )

    app.openapi = openapi  # type: ignore[method-assign]


def _feedback_one_or_many(schema: Schema) -> None:
    """POST /feedback takes one label or a list of them (schemas.FeedbackBody): both, in the schema."""
    body = schema["paths"]["/feedback"]["post"]["requestBody"]["content"]["application/json"]
    many = body["schema"]
    body["schema"] = {"anyOf": [many["items"], many], "title": many.get("title")}


def _drop_warmup_auth(schema: Schema) -> None:
    """Without WARMUP_TOKEN, /warmup takes no credentials and never answers 401 or 403."""
    warmup = schema["paths"]["/warmup"]["post"]
    warmup.pop("security", None)
    for code in ("401", "403"):
        warmup["responses"].pop(code, None)
    uses_security = any("security" in op for path in schema["paths"].values() for op in path.values())
    if not uses_security:
        schema["components"].pop("securitySchemes", None)
