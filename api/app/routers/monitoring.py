"""GET /monitoring (the newest drift report's page, as monitor_pipeline wrote it) and its JSON."""

from html import escape

from fastapi import APIRouter, HTTPException, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

import penguins_contract as contract
from app.deps import SettingsDep
from app.drift_reports import NO_REPORT, ReportError, read_latest
from app.schemas import ErrorMessage

# The report carries its plotly.js and styles inline and loads nothing else: allow inline code, nothing more.
REPORT_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}
NO_REPORT_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Penguins drift monitoring</title></head>
<body style="font-family: system-ui, sans-serif; margin: 1.5rem">
<h1>Penguins drift monitoring</h1>
<p id="status">There is no drift report yet.</p>
<p>{escape(NO_REPORT)}. It runs every hour under Airflow's scheduler; run it once now with
<code>make monitor</code>. It needs predictions: every answer of this API is logged and loaded by it.</p>
<p><a href="/">Back to the predictor</a></p>
</body></html>
"""
router = APIRouter(tags=["monitoring"])
_UNREADABLE: dict[int | str, dict[str, object]] = {
    503: {"model": ErrorMessage, "description": "The newest report cannot be read"}
}


async def _latest(settings: SettingsDep, name: str) -> bytes | None:
    try:
        return await run_in_threadpool(read_latest, settings.artifacts_dir, name)
    except ReportError as err:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(err)) from err


@router.get("/monitoring", response_class=HTMLResponse, responses=_UNREADABLE)
async def monitoring(settings: SettingsDep) -> Response:
    """The newest drift report's page (training vs recent distributions), or how to make the first one."""
    page = await _latest(settings, contract.REPORT_HTML)
    if page is None:
        return HTMLResponse(NO_REPORT_PAGE, headers=REPORT_HEADERS)
    return HTMLResponse(page, headers=REPORT_HEADERS)


@router.get(
    "/monitoring/drift.json",
    responses={
        200: {"description": "The newest report's drift.json, as monitor_pipeline wrote it"},
        404: {"model": ErrorMessage, "description": NO_REPORT},
        **_UNREADABLE,
    },
)
async def drift_json(settings: SettingsDep) -> Response:
    """The newest drift report: model version, window, per-feature test statistic, p-value, PSI and flag."""
    report = await _latest(settings, contract.REPORT_JSON)
    if report is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_REPORT)
    return Response(report, media_type="application/json", headers={"Cache-Control": "no-cache"})
