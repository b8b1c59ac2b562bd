"""The Grafana dashboard (config/grafana/vaxflow.json): valid JSON Grafana can import, every query
valid PromQL (checked by promtool as recording rules) and reading only metrics vaxflow's code
exposes, and a panel for each thing operators asked for."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from metric_names import QUERIED, missing, registered

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "config" / "grafana" / "vaxflow.json"


def load() -> dict[str, Any]:
    body: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return body


def queries(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_it_is_a_dashboard_grafana_can_import() -> None:
    dashboard = load()
    assert dashboard["uid"] == "vaxflow-ops"
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0
        assert grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"
    for expr in queries(dashboard):
        for used in ("$group", "${datasource}"):
            if used in expr:
                assert used.strip("${}") in variables


def test_every_query_reads_metrics_the_code_exposes() -> None:
    queried = {name for expr in queries(load()) for name in QUERIED.findall(expr)}
    assert len(queried) > 10
    assert missing(queried, registered()) == set()


def test_a_panel_for_each_thing_operators_watch() -> None:
    text = " ".join(queries(load()))
    for metric in (
        "vaxflow_ops_lag_offsets",  # lag per group
        "vaxflow_ops_lag_seconds",
        "vaxflow_gateway_events_accepted_total",  # events in
        "vaxflow_batcher_rows_total",  # events out
        "vaxflow_uploader_files_sent_total",
        "vaxflow_ops_rejected_total",  # rejects
        "vaxflow_ops_dead_letters_total",  # dead letters
        "vaxflow_uploader_mesh_unavailable_since_seconds",  # MESH availability
        'vaxflow_ops_lag_offsets{group=~".*vaxflow-uploader"}',  # files waiting
        "vaxflow_worker_restarts_total",  # restarts
    ):
        assert metric in text, metric


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool not installed (apt-get install prometheus; .ci/run does)")
    rules = [{"record": f"vaxflow:dashboard:q{i}", "expr": expr.replace("$group", ".*")}
             for i, expr in enumerate(queries(load()))]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([tool, "check", "rules", "rules.yml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout
