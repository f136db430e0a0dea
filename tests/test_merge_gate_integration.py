"""The pre-merge gate against a real lakeFS server: a merge event naming what lakeFS does not have is
blocked with a 400 that names it (found by fuzzing: it was a 500 "merge gate error")."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from infra.bridge.app import BridgeConfig, create_app
from infra.bridge.gate import SpecMergeGate
from lakeloop.adapters.lakefs import Lake
from lakeloop.spec import DatasetSpec
from lakeloop.state import Ledger

pytestmark = pytest.mark.integration
SECRET = "gate-secret"
SPEC = Path(__file__).resolve().parents[1] / "examples/churn/spec.yaml"


def pre_merge(repository: str, source_ref: str, branch: str = "main") -> dict[str, object]:
    return {"event_type": "pre-merge", "event_time": "2026-07-23T14:44:31Z", "action_name": "lakeloop",
            "hook_id": "lakeloop_merge_gate", "repository_id": repository, "branch_id": branch,
            "source_ref": source_ref, "merge_source": source_ref}


@pytest.mark.parametrize("what", ["source", "destination", "repository", "bad-ref"])
def test_merge_of_something_lakefs_does_not_have_is_blocked_with_a_400(lake: Lake, tmp_path: Path,
                                                                       what: str) -> None:
    repo = lake.settings.repository
    body = {"source": pre_merge(repo, "no-such-branch"),
            "destination": pre_merge(repo, "main", branch="no-such-branch"),
            "repository": pre_merge("no-such-repo", "main"),
            "bad-ref": pre_merge(repo, "main@~1^x")}[what]
    gate = SpecMergeGate(DatasetSpec.from_yaml(SPEC), lake.settings)
    app = create_app(BridgeConfig(lakefs_secret=SECRET, label_studio_secret="ls-" + SECRET,
                                  ledger=Ledger(tmp_path / "l.sqlite3"), emitter=lambda e: None,
                                  gate=gate))
    r = TestClient(app, raise_server_exceptions=False).post("/lakefs/pre-merge", json=body,
                                                              headers={"X-Lakeloop-Token": SECRET})
    assert r.status_code == 400, r.text
    verdict = r.json()
    assert verdict["status"] == "blocked"
    assert "lakefs://" in verdict["message"] and ("not found" in verdict["message"] or "invalid" in verdict["message"])
