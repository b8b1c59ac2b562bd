"""The shipped alerting rules: valid (`promtool check rules`), behaving as their unit tests say
(`promtool test rules`: each rule firing on its case and silent on its near misses), querying only
metrics vaxflow exposes, and the Prometheus config for the local stack valid. Needs only promtool
(Debian's `prometheus` package; .ci/run installs it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from metric_names import QUERIED, missing, registered

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "prometheus"


def promtool(*args: str, cwd: Path = RULES) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(tool).exists():
        pytest.skip("promtool not installed (apt-get install prometheus; .ci/run does)")
    return subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_rules_are_valid() -> None:
    done = promtool("check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 7 rules found" in done.stdout


def test_rules_fire_as_their_unit_tests_say() -> None:
    done = promtool("test", "rules", "alerts.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_a_wrong_threshold_fails_the_rule_tests(tmp_path: Path) -> None:
    """The rule tests can fail: two restarts in 15 minutes must not page anyone."""
    rules = (RULES / "alerts.yml").read_text()
    assert "increase(vaxflow_worker_restarts_total[15m]) >= 3" in rules
    (tmp_path / "alerts.yml").write_text(rules.replace("restarts_total[15m]) >= 3", "restarts_total[15m]) >= 2"))
    shutil.copy(RULES / "alerts.test.yml", tmp_path)
    done = promtool("test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert done.returncode != 0
    assert 'worker="validator"' in done.stdout + done.stderr


def test_every_rule_covers_what_the_issue_asks_and_queries_only_metrics_that_exist() -> None:
    groups = yaml.safe_load((RULES / "alerts.yml").read_text())["groups"]
    rules = {r["alert"]: r["expr"] for g in groups for r in g["rules"]}
    assert {"VaxflowConsumerStopped", "VaxflowConsumerStalled", "VaxflowDeadLettersGrowing",
            "VaxflowMeshUnavailable", "VaxflowWorkerRestartLoop"} <= set(rules)
    queried = {name for expr in rules.values() for name in QUERIED.findall(expr)}
    assert queried
    assert missing(queried, registered()) == set()


def test_the_local_stack_config_is_valid_and_scrapes_the_ops_service_and_every_worker() -> None:
    done = promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load((RULES / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"vaxflow-ops", "vaxflow-validator", "vaxflow-batcher", "vaxflow-uploader"} <= jobs
