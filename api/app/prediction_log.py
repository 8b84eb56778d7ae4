"""The prediction log: every answered penguin, one JSON line, in PREDICTIONS_DIR (the format is fixed in the
README's "Prediction log" section; monitor_pipeline loads it into `penguins_predictions`). The feedback log
(POST /feedback's true species, `penguins_feedback`) is written beside it by the same writer, in files of its
own: one `JsonLinesLog` class serves both, told its file prefix, record key and counters by its `LogKind`.

Serving never waits on the disk: a request turns its answers into whole lines (orjson) and hands them to this
worker process's writer thread, which appends everything pending with one `os.write` on an O_APPEND fd every
FLUSH_SECONDS. A line is written whole or ends without its newline (a crash mid-write), and readers take only
lines that end with a newline, so no half record is ever read as whole. Each process writes its own file, so
workers never interleave. When the writer lags (more than MAX_PENDING_BYTES waiting) new records are dropped
and counted instead of blocking; a failing disk or folder is logged once per episode, counted, never fails a
prediction, and the writer starts a new file once the folder accepts writes again.
"""

import errno
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import orjson

from app import metrics
from app.core.config import Settings
from app.encoding import FeatureEncoder
from app.ids import new_ids
from app.predictor import Predictor, Scores
from app.schemas import PenguinFeatures
from penguins_contract import (
    FEEDBACK_FILE_PREFIX,
    FEEDBACK_KEY,
    PREDICTION_KEY,
    PREDICTIONS_FILE_PREFIX,
    FeedbackRecord,
    PredictionEndpoint,
    PredictionRecord,
)

log = logging.getLogger(__name__)

# How often the writer appends what is pending: the records a SIGKILL may lose are at most this old.
FLUSH_SECONDS = 0.1
# Lines waiting for the writer, in bytes (many full batches' worth): above this, records are dropped.
MAX_PENDING_BYTES = 64 * 1024 * 1024
# How long shutdown waits for the last flush.
CLOSE_SECONDS = 10.0
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC


def _reason(error: OSError) -> str:
    """A bounded label for /metrics: one of metrics.LOG_ERROR_REASONS."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk_full"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission"
    if error.errno in (errno.ENOENT, errno.ENOTDIR):
        return "folder_missing"
    return "io_error"


@dataclass(frozen=True, slots=True)
class LogKind:
    """What sets one log apart: its name in the server's log, its files' prefix, its records' first key (where
    a list's dump is cut into lines) and its counters in /metrics."""

    name: str
    file_prefix: str
    key: str
    counters: metrics.LogCounters
    lost: str  # what a failing disk means, for the server's log

    def seams(self) -> tuple[bytes, bytes]:
        """Where a record ends and the next begins in a list's dump, and in the log."""
        return b'},{"' + self.key.encode() + b'":', b'}\n{"' + self.key.encode() + b'":'


class JsonLinesLog:
    """This process's writer of one log: `_queue` from any thread, `start` and `close` from the app's
    lifespan."""

    kind: ClassVar[LogKind]

    def __init__(self, folder: Path, rotate_bytes: int, rotate_seconds: float) -> None:
        self.folder = folder
        self._between_records, self._between_lines = self.kind.seams()
        self._rotate_bytes = rotate_bytes
        self._rotate_seconds = rotate_seconds
        self._lock = threading.Lock()
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._pending_records = 0
        self._second = (-1, "")  # the last second _now formatted, and its text
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.kind.name.replace(" ", "-"), daemon=True)
        # Touched by the writer thread only.
        self._fd: int | None = None
        self._size = 0
        self._opened_at = 0.0
        self._failing: str | None = None

    def _queue(self, records: Sequence[Mapping[str, Any]]) -> bool:
        """Hand the records to the writer as whole lines, or drop and count them when it lags (False)."""
        if len(records) == 1:
            # /predict's. A copy with its newline, not OPT_APPEND_NEWLINE: orjson's own output, kept until
            # the next flush, costs far more to keep alive than this small copy costs to make (see INFORME).
            lines = orjson.dumps(records[0]) + b"\n"
        else:
            # One dump of the whole list, cut into lines where one record ends and the next begins, is much
            # cheaper than a dump per record. The cut is exact: inside a JSON string every quote is escaped,
            # so `},{"prediction_id":` (the kind's key) is found only between records (every record's first).
            lines = orjson.dumps(records)[1:-1].replace(self._between_records, self._between_lines) + b"\n"
        with self._lock:
            full = self._pending_bytes + len(lines) > MAX_PENDING_BYTES
            if not full:
                self._pending.append(lines)
                self._pending_bytes += len(lines)
                self._pending_records += len(records)
        if full:
            self.kind.counters.dropped.labels("queue_full").inc(len(records))
        return not full

    def _now(self) -> str:
        """The UTC time as 2026-11-30T23:15:00.123456Z, the part up to the second formatted once a second
        rather than once a record."""
        second, microsecond = divmod(time.time_ns() // 1000, 1_000_000)
        formatted_second, prefix = self._second  # one tuple: threads never see a half update
        if second != formatted_second:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
            self._second = (second, prefix)
        return f"{prefix}{microsecond:06d}Z"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Write what is pending, then close the file (the lifespan's shutdown)."""
        self._stop.set()
        self._thread.join(CLOSE_SECONDS)

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            try:
                self._flush()
            except Exception:  # a bug must not end the thread: serving would then only drop records
                log.exception("%s: unexpected error while writing", self.kind.name)
        self._flush()
        self._close_file()

    def _flush(self) -> None:
        with self._lock:
            pending, count = self._pending, self._pending_records
            self._pending, self._pending_bytes, self._pending_records = [], 0, 0
        if self._fd is not None and time.monotonic() - self._opened_at > self._rotate_seconds:
            self._close_file()
        if pending:
            self._write(b"".join(pending), count)

    def _write(self, lines: bytes, count: int) -> None:
        try:
            fd = self._fd if self._fd is not None else self._open()
            written = os.write(fd, lines)
        except OSError as error:
            self._failed(error, count)
            return
        if written != len(lines):  # the disk filled up mid-write: keep the whole lines, cut the rest off
            whole = lines.rfind(b"\n", 0, written) + 1
            kept = lines.count(b"\n", 0, whole)
            self._wrote(whole, kept)
            self._failed(OSError(errno.ENOSPC, "no space left (short write)", str(self.folder)), count - kept)
            return
        self._wrote(written, count)
        if self._failing is not None:
            log.warning("%s: writing to %s again", self.kind.name, self.folder)
            self._failing = None
        if self._size >= self._rotate_bytes:
            self._close_file()

    def _wrote(self, size: int, count: int) -> None:
        self._size += size
        self.kind.counters.records.inc(count)

    def _open(self) -> int:
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            started = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            path = self.folder / f"{self.kind.file_prefix}{started}-{os.getpid()}.jsonl"
            try:
                self._fd = os.open(path, _OPEN_FLAGS, 0o644)
            except FileExistsError:  # rotated twice within a microsecond
                continue
            self._size, self._opened_at = 0, time.monotonic()
            return self._fd

    def _failed(self, error: OSError, count: int) -> None:
        reason = _reason(error)
        self.kind.counters.errors.labels(reason).inc()
        self.kind.counters.dropped.labels("write_failed").inc(count)
        if self._failing != reason:  # once per episode, not once per flush
            log.error(
                "%s: cannot write to %s (%s): %s until it accepts writes again",
                self.kind.name,
                self.folder,
                error,
                self.kind.lost,
            )
            self._failing = reason
        if self._fd is not None:
            # Cut a partly written line off, so the file ends with a whole line and takes the next flush;
            # if even that fails, never append to it again (its last line has no newline: not a record).
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                self._close_file()

    def _close_file(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class PredictionLog(JsonLinesLog):
    """The prediction log: `record` and `record_scores` from any thread."""

    kind = LogKind(
        "prediction log",
        PREDICTIONS_FILE_PREFIX,
        PREDICTION_KEY,
        metrics.PREDICTION_LOG,
        "predictions are served but not logged",
    )

    def record(
        self,
        request_id: str,
        endpoint: PredictionEndpoint,
        penguins: Sequence[PenguinFeatures],
        answers: Sequence[Mapping[str, Any]],
        encoder: FeatureEncoder,
    ) -> None:
        """Queue one record per answered penguin (item = its position, prediction_id its answer's), never
        blocking.

        `encoder` is the answering version's: island and sex (known: they were answered) are logged in the
        model's spelling."""
        now = self._now()
        islands, sexes = encoder.spelling["island"], encoder.spelling["sex"]
        records: list[PredictionRecord] = [
            {
                "prediction_id": answer["prediction_id"],
                "request_id": request_id,
                "item": item,
                "time": now,
                "endpoint": endpoint,
                "model_version": answer["model_version"],
                "bill_length_mm": penguin.bill_length_mm,
                "bill_depth_mm": penguin.bill_depth_mm,
                "flipper_length_mm": penguin.flipper_length_mm,
                "body_mass_g": penguin.body_mass_g,
                "island": islands[penguin.island.lower()],
                "sex": sexes[penguin.sex.lower()],
                "species": answer["species"],
                "probabilities": answer["probabilities"],
            }
            for item, (penguin, answer) in enumerate(zip(penguins, answers, strict=True))
        ]
        self._queue(records)

    def record_scores(
        self,
        request_id: str,
        endpoint: PredictionEndpoint,
        measures: np.ndarray,
        categories: np.ndarray,
        scores: Scores,
        predictor: Predictor,
        prediction_ids: Sequence[str],
    ) -> None:
        """As `record`, for penguins answered as columns (the Open Inference Protocol's): `measures` and
        `categories` as `predictor.score` took them to give `scores`, `prediction_ids` in their order; island
        and sex in the model's spelling."""
        now, version, classes = self._now(), predictor.version, predictor.classes
        islands, sexes = predictor.encoder.categories["island"], predictor.encoder.categories["sex"]
        # The probabilities species by species (a column each), as Predictor.predict_batch builds them: far
        # cheaper than a dict(zip(...)) per penguin.
        by_species: list[dict[str, float]] = [{} for _ in range(len(measures))]
        for name, column in zip(classes, scores.probabilities.T.tolist(), strict=True):
            for penguin, probability in zip(by_species, column, strict=True):
                penguin[name] = probability
        records: list[PredictionRecord] = [
            {
                "prediction_id": prediction_id,
                "request_id": request_id,
                "item": item,
                "time": now,
                "endpoint": endpoint,
                "model_version": version,
                "bill_length_mm": bill_length,
                "bill_depth_mm": bill_depth,
                "flipper_length_mm": flipper_length,
                "body_mass_g": body_mass,
                "island": islands[island],
                "sex": sexes[sex],
                "species": classes[best],
                "probabilities": probabilities,
            }
            for item, (
                prediction_id,
                (bill_length, bill_depth, flipper_length, body_mass),
                (island, sex),
                best,
                probabilities,
            ) in (
                enumerate(
                    zip(
                        prediction_ids,
                        measures.tolist(),
                        categories.tolist(),
                        scores.best.tolist(),
                        by_species,
                        strict=True,
                    )
                )
            )
        ]
        self._queue(records)


class FeedbackLog(JsonLinesLog):
    """The feedback log: `record` from any thread."""

    kind = LogKind(
        "feedback log",
        FEEDBACK_FILE_PREFIX,
        FEEDBACK_KEY,
        metrics.FEEDBACK_LOG,
        "accepted feedback is lost",
    )

    def record(self, request_id: str, labels: Sequence[tuple[str, str]]) -> list[str] | None:
        """Queue one record per (prediction_id, species), never blocking: their new feedback_ids in order, or
        None when the writer lags (nothing queued: the client is told to retry, a label is not lost
        silently)."""
        now = self._now()
        feedback_ids = new_ids(len(labels))
        records: list[FeedbackRecord] = [
            {
                "feedback_id": feedback_id,
                "prediction_id": prediction_id,
                "species": species,
                "time": now,
                "request_id": request_id,
            }
            for feedback_id, (prediction_id, species) in zip(feedback_ids, labels, strict=True)
        ]
        return feedback_ids if self._queue(records) else None


@dataclass(frozen=True, slots=True)
class RequestRecorder:
    """The prediction log bound to one request's id: what the routes get (one dependency, not two)."""

    log: PredictionLog | None  # None with PREDICTIONS_LOG=false
    request_id: str

    def __call__(
        self,
        endpoint: PredictionEndpoint,
        penguins: Sequence[PenguinFeatures],
        answers: Sequence[Mapping[str, Any]],
        encoder: FeatureEncoder,
    ) -> None:
        if self.log is not None:
            self.log.record(self.request_id, endpoint, penguins, answers, encoder)

    def scores(
        self,
        endpoint: PredictionEndpoint,
        measures: np.ndarray,
        categories: np.ndarray,
        scores: Scores,
        predictor: Predictor,
        prediction_ids: Sequence[str],
    ) -> None:
        if self.log is not None:
            self.log.record_scores(
                self.request_id, endpoint, measures, categories, scores, predictor, prediction_ids
            )


Log = TypeVar("Log", bound=JsonLinesLog)


def start_log(settings: Settings, kind: type[Log]) -> Log | None:
    """This process's running log of `kind`, or None with PREDICTIONS_LOG=false (no thread, no file)."""
    if not settings.predictions_log:
        return None
    running = kind(
        settings.predictions_dir, settings.predictions_rotate_bytes, settings.predictions_rotate_seconds
    )
    running.start()
    return running
