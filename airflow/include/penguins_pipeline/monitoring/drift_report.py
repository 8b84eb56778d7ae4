"""A drift report on disk: `drift.json` and a self-contained `drift.html`, published so no reader sees half.

`reports/<report id>/` is written in a hidden folder, fsynced, renamed into place under a name of its own
(`<publish time>-<run id>`: a retry of a run never touches the folder `latest.json` names); `reports/
latest.json` is replaced atomically, last (as `current.json` for model versions); older reports, and the
earlier attempts of a retried run, are pruned only after that. The page carries plotly.js inline: it works
offline, from the API or opened as a file.
"""

import html
import json
import os
import secrets
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

import penguins_contract as contract
from penguins_pipeline.core.files import (
    STAGING_PREFIX,
    fsync_path,
    remove_folder,
    write_file,
    write_json_atomically,
)

STALE_STAGING_SECONDS = 3600
TRAINING_COLOR, RECENT_COLOR = "#4c78a8", "#f58518"


def reports_dir(artifacts_dir: Path) -> Path:
    return Path(artifacts_dir) / contract.REPORTS_DIR


def distributions_figure(report: dict[str, Any], training: pd.DataFrame, recent: pd.DataFrame) -> go.Figure:
    """Per feature (and the species), the training and the recent distribution overlaid, as shares."""
    judged = {**report["features"], **({"species": report["species"]} if report.get("species") else {})}
    names = list(judged)
    rows = (len(names) + 1) // 2
    titles = [f"{name}{' — DRIFTED' if judged[name]['drifted'] else ''}" for name in names]
    figure = make_subplots(rows=rows, cols=2, subplot_titles=titles, vertical_spacing=0.3 / max(rows, 1))
    for position, name in enumerate(names):
        row, col = position // 2 + 1, position % 2 + 1
        numeric = judged[name]["kind"] == "numeric"
        if numeric:  # one set of bins for both, so the bars compare
            low = min(training[name].min(), recent[name].min())
            high = max(training[name].max(), recent[name].max())
            bins = {"start": low, "end": high, "size": (high - low) / 30 or 1}
        sides = (("training", training, TRAINING_COLOR, -0.4), ("recent", recent, RECENT_COLOR, 0.0))
        for label, frame, color, offset in sides:
            common = {"name": label, "legendgroup": label, "showlegend": position == 0, "marker_color": color}
            if numeric:
                trace: go.Histogram | go.Bar = go.Histogram(
                    x=frame[name], histnorm="percent", opacity=0.6, xbins=bins, **common
                )
            else:  # side by side: the bars of a category start at `offset`, 0.4 wide
                shares = judged[name][label]
                percent = [100 * share for share in shares.values()]
                trace = go.Bar(x=list(shares), y=percent, offset=offset, width=0.4, **common)
            figure.add_trace(trace, row=row, col=col)
        figure.update_yaxes(title_text="% of penguins", row=row, col=col)
    figure.update_layout(
        barmode="overlay",
        height=320 * rows,
        margin={"t": 60, "l": 60, "r": 20, "b": 40},
        template="plotly_white",
    )
    return figure


def _summary_rows(report: dict[str, Any]) -> str:
    judged = {**report["features"], **({"species": report["species"]} if report.get("species") else {})}
    rows = []
    for name, result in judged.items():
        verdict = "drifted" if result["drifted"] else "stable"
        rows.append(
            f'<tr class="{verdict}"><td>{html.escape(name)}</td><td>{result["test"]}</td>'
            f"<td>{result['statistic']:.4g}</td><td>{result['p_value']:.3g}</td><td>{result['psi']:.3f}</td>"
            f"<td>{verdict}</td></tr>"
        )
    return "\n".join(rows)


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _confusion(summary: dict[str, Any]) -> str:
    """The confusion matrix of one version as a table: rows the true species, columns the predicted."""
    labels = [html.escape(name) for name in summary["confusion"]["labels"]]
    head = "".join(f"<th>{name}</th>" for name in labels)
    rows = "".join(
        f"<tr><th>{name}</th>{''.join(f'<td>{count}</td>' for count in counts)}</tr>"
        for name, counts in zip(labels, summary["confusion"]["matrix"], strict=True)
    )
    head = f"<thead><tr><th>true \\ predicted</th>{head}</tr></thead>"
    return f"<table class=confusion>{head}<tbody>{rows}</tbody></table>"


def live_section(report: dict[str, Any]) -> str:
    """The "Live accuracy" part: the labelled predictions of the window per model version (accuracy, recall
    per species, confusion matrix), the unmatched labels, and train_pipeline's latest retraining decision; one
    element (`#live`), so a reader or `make screenshots` can point at it."""
    measured = report.get("live")
    if measured is None:
        return ""
    verdict = "below" if measured["below_threshold"] else "ok"
    headline = (
        f"Live accuracy {_share(measured['accuracy'])} on {measured['labelled']} labelled predictions of the "
        f"window (threshold {_share(measured['min_accuracy'])} once at least {measured['min_labelled']} are "
        f"labelled){': BELOW THE THRESHOLD' if measured['below_threshold'] else ''}; "
        f"{measured['unmatched']} labels match no loaded prediction."
    )
    parts = [
        f'<h2>Live accuracy</h2><p class="status {verdict}" id="live-status">{html.escape(headline)}</p>'
    ]
    for version, summary in measured["by_version"].items():
        recall = ", ".join(
            f"{html.escape(name)} {_share(value)}" for name, value in summary["recall"].items()
        )
        parts.append(
            f"<h3>Model <code>{html.escape(version)}</code>: {_share(summary['accuracy'])} on "
            f"{summary['labelled']} labelled</h3><p>Recall: {recall}</p>{_confusion(summary)}"
        )
    decision = report.get("retraining")
    if decision:
        parts.append(
            "<h2>Latest retraining</h2><p id=retraining>"
            + html.escape(
                f"{decision.get('time', '?')}: challenger {decision.get('candidate')} against champion "
                f"{decision.get('champion')}, {'promoted' if decision.get('promoted') else 'not promoted'}: "
                f"{decision.get('reason', '')}"
            )
            + "</p>"
        )
    return '<section id="live">' + "\n".join(parts) + "</section>"


def render_html(report: dict[str, Any], training: pd.DataFrame | None, recent: pd.DataFrame | None) -> str:
    """The whole page; plotly.js inline (no request leaves the page)."""
    window = {key: report["window"][key][:16].replace("T", " ") for key in ("start", "end")}
    headline = html.escape(report["message"])
    sampled = (
        f" (judged on a seeded sample of {report['n_sampled']})"
        if report["n_sampled"] < report["n_predictions"]
        else ""
    )
    facts = (
        f"Model version <code>{html.escape(str(report['model_version']))}</code>; "
        f"{report['n_predictions']} predictions{sampled} from {html.escape(window['start'])} to "
        f"{html.escape(window['end'])} (UTC); thresholds: p-value &lt; {report['thresholds']['p_value']} "
        f"and PSI &ge; {report['thresholds']['psi']}; report {html.escape(report['run_id'])}, "
        f"written {html.escape(report['created_at'])}."
    )
    body = f"<p>{facts}</p>{live_section(report)}"
    if report["features"] and training is not None and recent is not None:
        figure = distributions_figure(report, training, recent)
        body += (
            "<table><thead><tr><th>feature</th><th>test</th><th>statistic</th><th>p-value</th><th>PSI</th>"
            f"<th>verdict</th></tr></thead><tbody>{_summary_rows(report)}</tbody></table>"
            + figure.to_html(full_html=False, include_plotlyjs=True, div_id="distributions")
        )
    status = "drifted" if report["drifted"] else report["status"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Penguins drift report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
.status {{ padding: .6rem 1rem; border-radius: .4rem; background: #e8f1fb; }}
.status.drifted, .status.below {{ background: #fde8e8; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
td, th {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
tr.drifted td {{ background: #fde8e8; font-weight: 600; }}
</style></head>
<body><h1>Penguins drift report</h1>
<p class="status {status}" id="status">{headline}</p>
{body}
</body></html>
"""


def publish(
    artifacts_dir: Path, report: dict[str, Any], training: pd.DataFrame | None, recent: pd.DataFrame | None
) -> Path:
    """Write the report's folder under a hidden name, rename it into place under a new name, then point
    latest.json at it. Nothing is replaced or removed here: what latest.json named stays until `prune`."""
    folder = reports_dir(artifacts_dir)
    folder.mkdir(parents=True, exist_ok=True)
    name = contract.report_id(report["run_id"], datetime.now(UTC))
    staging = folder / f"{STAGING_PREFIX}{name}-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        write_file(staging / contract.REPORT_JSON, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        write_file(staging / contract.REPORT_HTML, render_html(report, training, recent))
        fsync_path(staging)
        target = folder / name
        os.rename(staging, target)  # a new name; an existing (non-empty) folder makes it fail, never replaced
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_path(folder)
    latest = {"report": name, "run_id": report["run_id"], "created_at": report["created_at"]}
    write_json_atomically(folder / contract.LATEST_REPORT_FILE, {**latest, "drifted": report["drifted"]})
    return target


def prune(artifacts_dir: Path, keep: int, stale_after: float = STALE_STAGING_SECONDS) -> list[str]:
    """Keep the newest `keep` reports and the one latest.json names; drop the earlier attempts of a retried
    run (its newest replaces them) and what killed writers left."""
    folder = reports_dir(artifacts_dir)
    if not folder.is_dir():
        return []
    latest = contract.latest_report(artifacts_dir)
    reports = sorted(
        (p for p in folder.iterdir() if p.is_dir() and contract.REPORT_ID_PATTERN.fullmatch(p.name)),
        key=lambda p: (p.stat().st_mtime, p.name),
    )
    newest_of_run = {contract.report_run(p.name) or p.name: p for p in reports}  # the last one wins
    superseded = [p for p in reports if newest_of_run[contract.report_run(p.name) or p.name] != p]
    kept = [p for p in reports if p not in superseded]
    doomed = [p for p in superseded + kept[: max(len(kept) - keep, 0)] if p != latest]
    now = time.time()
    stale = [
        p
        for p in folder.iterdir()
        if p.name.startswith(STAGING_PREFIX) and now - p.stat().st_mtime > stale_after
    ]
    for path in doomed:
        remove_folder(path)
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return [p.name for p in doomed + stale]
