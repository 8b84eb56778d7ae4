"""The feedback log's record, written once: `POST /feedback` appends one line per true species it is told
(api/app), beside the prediction log in PREDICTIONS_DIR but in files of its own
(`feedback-<started>-<pid>.jsonl`), and monitor_pipeline loads them into the table `penguins_feedback`.
A label names the answer it corrects by the
`prediction_id` the API returned with it; the label's own `feedback_id` is made by the API, so a client that
sends the same label twice adds a second row, and the documented rule (the newest label of a prediction wins)
decides which one trains.
"""

import re
from typing import TypedDict


class FeedbackRecord(TypedDict):
    """One label, the fields in the order the API writes them: the key first."""

    feedback_id: str
    prediction_id: str
    species: str
    time: str
    request_id: str


FEEDBACK_FIELDS: tuple[str, ...] = tuple(FeedbackRecord.__annotations__)
FEEDBACK_KEY = FEEDBACK_FIELDS[0]
# The log's file names: `<prefix><UTC start, %Y%m%dT%H%M%S%fZ>-<pid>.jsonl`, one file per writing process.
PREDICTIONS_FILE_PREFIX = "predictions-"
FEEDBACK_FILE_PREFIX = "feedback-"
LOG_FILE_PATTERN = re.compile(r"(predictions|feedback)-[0-9]{8}T[0-9]{12}Z-[0-9]+\.jsonl")
