"""Where the penguins come from (`PENGUINS_SOURCE`): typed DataFrame chunks, never the whole source at once.

Every chunk has the DATA_COLUMNS with one fixed dtype each (str categoricals, float64 measures, Int64 year)
and the values exactly as the source gave them: checking and cleaning come later, on `penguins_raw`.
"""

from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd

from penguins_pipeline.core.errors import PermanentError
from penguins_pipeline.core.schema import DATA_COLUMNS, NUMERIC_FEATURES, REQUIRED_COLUMNS

SOURCES_HELP = "palmerpenguins | seaborn | csv:<path> | synthetic:<rows>"
CATEGORICAL_COLUMNS = [column for column in DATA_COLUMNS if column not in [*NUMERIC_FEATURES, "year"]]
DTYPES = {
    **dict.fromkeys(CATEGORICAL_COLUMNS, "str"),
    **dict.fromkeys(NUMERIC_FEATURES, "float64"),
    "year": "Int64",
}


class SourceError(PermanentError, ValueError):
    """The source cannot give usable rows (unknown, unreachable, malformed, empty): retrying will not help."""


def open_source(spec: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The chunks of the source `spec` names (see SOURCES_HELP); nothing is read before the first `next`."""
    kind, _, argument = spec.strip().partition(":")
    if kind == "palmerpenguins" and not argument:
        return _palmerpenguins()
    if kind == "seaborn" and not argument:
        return _seaborn()
    if kind == "csv" and argument:
        return _csv(Path(argument), chunk_rows)
    if kind == "synthetic" and argument:
        from penguins_pipeline.data.synthetic import synthetic_chunks

        try:
            rows = int(argument)
        except ValueError:
            raise SourceError(f"synthetic:<rows> needs a whole number of rows, not {argument!r}") from None
        return synthetic_chunks(rows)
    raise SourceError(f"unknown PENGUINS_SOURCE {spec!r}: use {SOURCES_HELP}")


def conform(frame: pd.DataFrame, origin: str) -> pd.DataFrame:
    """`frame` as the DATA_COLUMNS with their dtypes; a missing column or a wrong type fails naming it."""
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise SourceError(
            f"{origin} lacks the column(s) {', '.join(missing)} (expected: {', '.join(DATA_COLUMNS)})"
        )
    frame = frame.reindex(columns=DATA_COLUMNS)
    problems = []
    for column in [*NUMERIC_FEATURES, "year"]:
        numbers = pd.to_numeric(frame[column], errors="coerce")
        bad = frame[column].notna() & numbers.isna()
        if column == "year":
            bad |= numbers.notna() & (numbers != numbers.round())
        if bad.any():
            example = frame[column][bad].iloc[0]
            problems.append(f"{column} ({int(bad.sum())} value(s) not a number, e.g. {example!r})")
        frame[column] = numbers
    if problems:
        raise SourceError(f"{origin} has wrong types in column(s): {'; '.join(problems)}")
    return frame.astype(DTYPES)


def _palmerpenguins() -> Iterator[pd.DataFrame]:
    """The 344 penguins bundled with the `palmerpenguins` package (offline): one chunk."""
    import palmerpenguins

    yield conform(palmerpenguins.load_penguins(), "palmerpenguins")


def _seaborn() -> Iterator[pd.DataFrame]:
    """seaborn's copy of the same penguins, which it downloads from GitHub at run time (no `year` column)."""
    import urllib.error

    import seaborn

    try:
        frame = seaborn.load_dataset("penguins")
    except (urllib.error.URLError, OSError) as err:
        raise SourceError(
            f"seaborn downloads its penguins from the network, which is unreachable here ({err}); "
            "use PENGUINS_SOURCE=palmerpenguins: the same penguins, bundled offline"
        ) from err
    yield conform(frame, "seaborn")


def _csv(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """A CSV file with a header naming the DATA_COLUMNS (`year` optional), read `chunk_rows` at a time."""
    if not path.is_file():
        raise SourceError(f"csv source {path} is not a readable file")
    text = dict.fromkeys(CATEGORICAL_COLUMNS, "str")
    try:
        reader = pd.read_csv(path, chunksize=chunk_rows, dtype=text)
        for number, chunk in enumerate(reader):
            origin = f"csv source {path} (rows {number * chunk_rows + 1}-{number * chunk_rows + len(chunk)})"
            yield conform(chunk, origin)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise SourceError(f"csv source {path} is not valid CSV: {err}") from err


def numbered(chunks: Iterable[pd.DataFrame], key: str) -> Iterator[pd.DataFrame]:
    """The chunks with `key` first: each row's 1-based position across all chunks."""
    start = 1
    for chunk in chunks:
        yield chunk.reset_index(drop=True).assign(**{key: range(start, start + len(chunk))})[
            [key, *chunk.columns]
        ]
        start += len(chunk)
