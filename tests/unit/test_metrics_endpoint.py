"""``/metrics`` (prometheus_async's handler) answers in the format the scraper asks
for, as prometheus_client's own servers negotiate it: Prometheus text by default,
OpenMetrics on request."""

from __future__ import annotations

import aiohttp
import pytest

from lasched import metrics, server

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


@pytest.mark.parametrize(
    ("accept", "content_type", "last_line"),
    [
        (None, "text/plain; version=", None),
        ("text/plain;version=0.0.4;q=0.5,*/*;q=0.1", "text/plain; version=", None),
        (OPENMETRICS, "application/openmetrics-text; version=1.0.0", "# EOF"),
    ],
    ids=["default", "prometheus", "openmetrics"],
)
async def test_metrics_are_served_in_the_asked_format(
    accept: str | None, content_type: str, last_line: str | None
) -> None:
    metrics.informer_relists.labels("probe").inc(0)
    runner = await server.start(server.build_app(problems=list), host="127.0.0.1", port=0)
    try:
        url = f"http://127.0.0.1:{server.bound_port(runner)}/metrics"
        headers = {"Accept": accept} if accept else {}
        async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
            body = await resp.text()
    finally:
        await runner.cleanup()
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith(content_type)
    assert 'lasched_informer_relists_total{resource="probe"}' in body
    if last_line:
        assert body.rstrip().splitlines()[-1] == last_line
