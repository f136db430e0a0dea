"""The README's figures are results.json's, rendered by bench/readme_figures.py, never typed by hand."""

from __future__ import annotations

import json

from bench.readme_figures import README, RESULTS, readme_block, render


def test_readme_figures_are_the_rendered_results() -> None:
    assert readme_block(README.read_text()) == render(), "run `python -m bench.readme_figures`"


def test_a_changed_result_changes_the_rendered_table() -> None:
    results = json.loads(RESULTS.read_text())
    results["monitor"]["false_alarm_rate"] = 0.5
    assert "0.500 of stationary batches flagged" in render(results)
    assert render(results) != readme_block(README.read_text())
