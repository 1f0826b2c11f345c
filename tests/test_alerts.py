"""deploy/prometheus/kiosk-alerts.yml: the README's alert rules, checked by Prometheus's own promtool.

``promtool check rules`` parses the rule file (PromQL and templates), and
``promtool test rules`` evaluates it over made-up series (kiosk-alerts.test.yml):
each alert fires when it should and not before. promtool comes with Debian's
``prometheus`` package, which .ci/run installs. The README must show the same rules.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kiosk import metrics

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "kiosk-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "kiosk-alerts.test.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)")


@needs_promtool
def test_promtool_checks_and_tests_the_rules():
    check = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "SUCCESS: 5 rules found" in check.stdout, check.stdout + check.stderr
    test = subprocess.run([PROMTOOL, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True,
                          timeout=60, cwd=RULES.parent)
    assert test.returncode == 0, test.stdout + test.stderr


@needs_promtool
def test_promtool_would_catch_a_wrong_threshold(tmp_path):
    """The rule tests can fail: with the queue threshold at two hours, the one-hour alert does not fire."""
    (tmp_path / "kiosk-alerts.yml").write_text(RULES.read_text().replace("> 3600", "> 7200"))
    (tmp_path / "kiosk-alerts.test.yml").write_text(RULE_TESTS.read_text())
    test = subprocess.run([PROMTOOL, "test", "rules", "kiosk-alerts.test.yml"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert test.returncode != 0 and "KioskQueueStale" in test.stdout + test.stderr


def test_rules_use_only_metrics_the_kiosk_writes():
    written = set(metrics.GAUGES) | {"kiosk_reader_up", "kiosk_clock_synced", "kiosk_last_delivery_timestamp_seconds"}
    used = set(re.findall(r"\b(kiosk_[a-z_]+)\b", "\n".join(
        ln for ln in RULES.read_text().splitlines() if ln.strip().startswith("expr:"))))
    assert used and used <= written, used - written


def test_readme_shows_the_rule_file():
    readme = (ROOT / "README.md").read_text()
    body = "\n".join(ln for ln in RULES.read_text().splitlines() if not ln.startswith("#")) + "\n"
    assert "```yaml\n" + body + "```" in readme
