"""Data CI: a merge from an experiment branch needs that branch's latest verdict not to be `worse`."""

from __future__ import annotations

import pytest

from infra.bridge.gate import experiment_verdict_problems
from lakeloop.adapters.lakefs import Lake

pytestmark = pytest.mark.integration


def _report(lake: Lake, branch: str, judged: str, verdict: str) -> str:
    lake.write_bytes(branch, f"_lakeloop/experiments/{judged[:12]}.json", b"{}")
    return lake.commit(branch, f"report {verdict}", {"lakeloop.kind": "experiment-report",
                                                     "lakeloop.experiment.commit": judged,
                                                     "lakeloop.experiment.verdict": verdict})


def test_latest_verdict_decides_and_a_newer_data_commit_is_pending(lake: Lake) -> None:
    lake.ensure_branch("exp-a", "main")
    lake.write_bytes("exp-a", "data/a.csv", b"a\n1\n")
    c1 = lake.commit("exp-a", "data")
    (pending,) = experiment_verdict_problems(lake, "exp-a", "exp-a")
    assert "no verdict yet" in pending and c1[:12] in pending
    _report(lake, "exp-a", c1, "worse")
    (worse,) = experiment_verdict_problems(lake, "exp-a", "exp-a")
    assert "gets worse" in worse and c1[:12] in worse
    lake.write_bytes("exp-a", "data/b.csv", b"a\n2\n")
    c2 = lake.commit("exp-a", "fixed data")
    assert "no verdict yet" in experiment_verdict_problems(lake, "exp-a", "exp-a")[0]
    _report(lake, "exp-a", c2, "not-worse")
    assert experiment_verdict_problems(lake, "exp-a", "exp-a") == []
