"""The bridge's HTTP contract: auth, validation, dedupe, payload -> Prefect event mapping."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from pathlib import Path

import pytest
import yaml
from prefect.events import Event
from starlette.testclient import TestClient

from infra.bridge.app import BridgeConfig, create_app
from infra.bridge.auth import signed_headers
from infra.bridge.gate import MergeCheck
from infra.bridge.lakefs_actions import render_actions_yaml
from infra.bridge.models import LakeFSHookEvent
from lakeloop.events import (
    LABELS_READY,
    LAKEFS_COMMIT_CREATED,
    LAKEFS_MERGE_COMPLETED,
    EmitError,
    commit_event_id,
)
from lakeloop.state import Ledger, annotation_key, commit_key

SECRET = "s3cret-token"  # lakeFS's
LS_SECRET = "ls-s3cret-token"  # Label Studio's
SECRETS = {"lakefs_secret": SECRET, "label_studio_secret": LS_SECRET}
AUTH = {"X-Lakeloop-Token": SECRET}
LS_AUTH = {"X-Lakeloop-Token": LS_SECRET}


def post_commit(commit_id: str = "c0ffee01", **over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "event_type": "post-commit", "event_time": "2026-07-23T14:44:31Z", "action_name": "lakeloop",
        "hook_id": "lakeloop_relay", "repository_id": "churn", "branch_id": "ingest-1",
        "source_ref": commit_id, "commit_id": commit_id, "commit_message": "ingest batch 1",
        "committer": "admin", "commit_metadata": {"rows": "100"},
    }
    body.update(over)
    return body


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.fail = False

    def __call__(self, event: Event) -> None:
        if self.fail:
            raise EmitError("server down")
        self.events.append(event)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.sqlite3")


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def client(ledger: Ledger, rec: Recorder, gate=None) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(create_app(BridgeConfig(**SECRETS, ledger=ledger, emitter=rec, gate=gate)))


# ---- authentication ----------------------------------------------------------------------------
def test_rejects_missing_or_wrong_token(ledger: Ledger, rec: Recorder) -> None:
    c = client(ledger, rec)
    assert c.post("/lakefs/events", json=post_commit()).status_code == 401
    assert c.post("/lakefs/events", json=post_commit(), headers={"X-Lakeloop-Token": "nope"}).status_code == 401
    assert c.post("/label-studio/events", json={"action": "ANNOTATION_CREATED"}).status_code == 401
    assert c.post("/lakefs/pre-merge", json=post_commit()).status_code == 401
    assert rec.events == []


def test_accepts_hmac_signature(ledger: Ledger, rec: Recorder) -> None:
    c = client(ledger, rec)
    body = json.dumps(post_commit()).encode()
    ts = str(int(time.time()))
    good = "sha256=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    bad = "sha256=" + hmac.new(b"other", ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    hdr = {"content-type": "application/json", "X-Lakeloop-Timestamp": ts}
    assert c.post("/lakefs/events", content=body, headers={**hdr, "X-Lakeloop-Signature": bad}).status_code == 401
    r = c.post("/lakefs/events", content=body, headers={**hdr, "X-Lakeloop-Signature": good})
    assert r.status_code == 200, r.text
    assert len(rec.events) == 1


def test_replayed_signature_outside_the_window_is_refused(ledger: Ledger, rec: Recorder) -> None:
    """A request captured and sent again later is refused, though its signature is genuine."""
    c = TestClient(create_app(BridgeConfig(**SECRETS, ledger=ledger, emitter=rec, replay_window_s=300)))
    body = json.dumps(post_commit("replayed")).encode()
    hdr = {"content-type": "application/json"}
    captured = signed_headers(SECRET, body, now=time.time() - 301)
    r = c.post("/lakefs/events", content=body, headers={**hdr, **captured})
    assert r.status_code == 401 and "outside the replay window of 300 s" in r.json()["error"], r.text
    ahead = signed_headers(SECRET, body, now=time.time() + 301)  # a clock far ahead is no loophole
    assert c.post("/lakefs/events", content=body, headers={**hdr, **ahead}).status_code == 401
    assert rec.events == []
    # the same body signed now passes: the window, not the body, refused it
    r = c.post("/lakefs/events", content=body, headers={**hdr, **signed_headers(SECRET, body)})
    assert r.status_code == 200 and len(rec.events) == 1, r.text


def test_a_signature_without_its_timestamp_is_refused(ledger: Ledger, rec: Recorder) -> None:
    """The old body-only HMAC could be replayed forever; the timestamp is signed, so it cannot be moved."""
    c = client(ledger, rec)
    body = json.dumps(post_commit()).encode()
    body_only = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    r = c.post("/lakefs/events", content=body, headers={"X-Lakeloop-Signature": body_only})
    assert r.status_code == 401 and "X-Lakeloop-Timestamp" in r.json()["error"]
    moved = {**signed_headers(SECRET, body, now=time.time() - 3600), "X-Lakeloop-Timestamp": str(int(time.time()))}
    r = c.post("/lakefs/events", content=body, headers=moved)
    assert r.status_code == 401 and "wrong X-Lakeloop-Signature" in r.json()["error"]
    assert rec.events == []


@pytest.mark.parametrize("path", ["/lakefs/events", "/lakefs/pre-merge"])
def test_label_studio_secret_opens_no_lakefs_endpoint(ledger: Ledger, rec: Recorder, path: str) -> None:
    """Every Label Studio admin can read its webhook's secret: it must not let them fake a lakeFS commit."""
    c = client(ledger, rec, gate=lambda ev: MergeCheck(ok=True))
    r = c.post(path, json=post_commit(), headers=LS_AUTH)
    assert r.status_code == 401 and "Label Studio's secret" in r.json()["error"], r.text
    body = json.dumps(post_commit()).encode()
    r = c.post(path, content=body, headers=signed_headers(LS_SECRET, body))
    assert r.status_code == 401 and "Label Studio's secret" in r.json()["error"], r.text
    # and the other way round: lakeFS's secret is no Label Studio answer
    r = c.post("/label-studio/events", json={"action": "ANNOTATION_CREATED"}, headers=AUTH)
    assert r.status_code == 401 and "lakeFS's secret" in r.json()["error"]
    assert rec.events == []
    assert LS_SECRET not in r.text and SECRET not in r.text  # a refusal names the secret's owner, never the secret


# ---- validation --------------------------------------------------------------------------------
@pytest.mark.parametrize("body, needle", [
    (b"{not json", "not JSON"),
    (json.dumps({k: v for k, v in post_commit().items() if k != "repository_id"}).encode(), "repository_id"),
    (json.dumps(post_commit(event_time="yesterday")).encode(), "event_time"),
    (json.dumps(post_commit(commit_metadata="rows=1")).encode(), "commit_metadata"),
    (json.dumps({k: v for k, v in post_commit().items() if k != "commit_id"}).encode(), "commit_id"),
])
def test_malformed_is_400_and_emits_nothing(ledger: Ledger, rec: Recorder, body: bytes, needle: str) -> None:
    r = client(ledger, rec).post("/lakefs/events", content=body, headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 400
    assert needle in r.json()["error"]
    assert rec.events == []
    assert ledger.done() == []


# ---- mapping -----------------------------------------------------------------------------------
def test_post_commit_maps_to_commit_created(ledger: Ledger, rec: Recorder) -> None:
    r = client(ledger, rec).post("/lakefs/events", json=post_commit("abc123"), headers=AUTH)
    assert r.status_code == 200 and r.json()["status"] == "emitted"
    (ev,) = rec.events
    assert ev.event == LAKEFS_COMMIT_CREATED
    assert ev.resource.id == "lakefs.repo.churn.branch.ingest-1"
    assert ev.resource["lakefs.commit"] == "abc123"
    assert ev.id == commit_event_id(LAKEFS_COMMIT_CREATED, "churn", "abc123")
    p = ev.payload
    assert (p["repository"], p["branch"], p["commit_id"]) == ("churn", "ingest-1", "abc123")
    assert p["message"] == "ingest batch 1" and p["metadata"] == {"rows": "100"}
    assert p["lakefs_event"] == "post-commit" and p["delivered_by"] == "bridge"
    assert ledger.is_settled(commit_key("churn", "abc123"))


def test_post_merge_maps_to_merge_completed(ledger: Ledger, rec: Recorder) -> None:
    body = post_commit("m1", event_type="post-merge", branch_id="main", merge_source="ingest-1",
                       commit_metadata={".lakefs.merge.strategy": "default"})
    r = client(ledger, rec).post("/lakefs/events", json=body, headers=AUTH)
    assert r.status_code == 200
    (ev,) = rec.events
    assert ev.event == LAKEFS_MERGE_COMPLETED
    assert ev.resource.id == "lakefs.repo.churn.branch.main"
    assert ev.payload["merge_source"] == "ingest-1" and ev.payload["branch"] == "main"


def test_commits_on_branches_nobody_watches_are_ignored(ledger: Ledger, rec: Recorder) -> None:
    """Issue 10: a webhook for any branch (an action file with no branch filter) was relayed as production."""
    from lakeloop.branches import BranchPolicy

    policy = BranchPolicy(watched=("main",), experiments=("experiment-*",))
    c = TestClient(create_app(BridgeConfig(**SECRETS, ledger=ledger, emitter=rec, branches=policy)))
    r = c.post("/lakefs/events", json=post_commit("s1", branch_id="scratch"), headers=AUTH)
    assert r.status_code == 200 and r.json()["status"] == "ignored" and rec.events == []
    assert not ledger.is_settled(commit_key("churn", "s1"))  # a later policy that relays it may still replay it
    for branch in ("main", "experiment-shuffled"):
        r = c.post("/lakefs/events", json=post_commit(f"c-{branch}", branch_id=branch), headers=AUTH)
        assert r.json()["status"] == "emitted"
    assert [e.payload["branch"] for e in rec.events] == ["main", "experiment-shuffled"]


def test_other_lakefs_events_are_ignored_not_emitted(ledger: Ledger, rec: Recorder) -> None:
    body = post_commit(event_type="pre-merge", branch_id="main")
    r = client(ledger, rec).post("/lakefs/events", json=body, headers=AUTH)
    assert r.status_code == 200 and r.json()["status"] == "ignored"
    assert rec.events == []


def test_actions_commit_is_skipped(ledger: Ledger, rec: Recorder) -> None:
    body = post_commit("act1", commit_metadata={"lakeloop.kind": "actions"})
    r = client(ledger, rec).post("/lakefs/events", json=body, headers=AUTH)
    assert r.json()["status"] == "skipped"
    assert rec.events == []
    d = ledger.get(commit_key("churn", "act1"))
    assert d is not None and d.state == "skipped"


# ---- dedupe and failure --------------------------------------------------------------------------
def test_duplicate_delivery_emits_once_even_across_restarts(tmp_path: Path, rec: Recorder) -> None:
    path = tmp_path / "ledger.sqlite3"
    c1 = client(Ledger(path), rec)
    assert c1.post("/lakefs/events", json=post_commit("dup1"), headers=AUTH).json()["status"] == "emitted"
    assert c1.post("/lakefs/events", json=post_commit("dup1"), headers=AUTH).json()["status"] == "duplicate"
    c2 = client(Ledger(path), rec)  # a restarted bridge reads the same ledger file
    assert c2.post("/lakefs/events", json=post_commit("dup1"), headers=AUTH).json()["status"] == "duplicate"
    assert [e.payload["commit_id"] for e in rec.events] == ["dup1"]


def test_concurrent_deliveries_emit_once(ledger: Ledger, rec: Recorder) -> None:
    c = client(ledger, rec)
    statuses: list[str] = []

    def hit() -> None:
        statuses.append(c.post("/lakefs/events", json=post_commit("race"), headers=AUTH).json()["status"])

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == ["duplicate"] * 7 + ["emitted"]
    assert len(rec.events) == 1


def test_emit_failure_is_503_and_retryable(ledger: Ledger, rec: Recorder) -> None:
    c = client(ledger, rec)
    rec.fail = True
    r = c.post("/lakefs/events", json=post_commit("retry"), headers=AUTH)
    assert r.status_code == 503 and "server down" in r.json()["error"]
    assert not ledger.is_settled(commit_key("churn", "retry"))
    rec.fail = False
    assert c.post("/lakefs/events", json=post_commit("retry"), headers=AUTH).json()["status"] == "emitted"
    assert len(rec.events) == 1


# ---- Label Studio -----------------------------------------------------------------------------------
def ls_body(action: str = "ANNOTATION_CREATED", ann: int = 7, updated: str = "2026-07-23T10:00:00Z") -> dict:
    return {"action": action, "annotation": {"id": ann, "updated_at": updated, "result": []},
            "task": {"id": 3, "data": {"customer_id": "c1"}}, "project": {"id": 12, "title": "churn review"}}


def test_label_studio_annotation_emits_labels_ready_once_per_version(ledger: Ledger, rec: Recorder) -> None:
    c = client(ledger, rec)
    assert c.post("/label-studio/events", json=ls_body(), headers=LS_AUTH).json()["status"] == "emitted"
    assert c.post("/label-studio/events", json=ls_body(), headers=LS_AUTH).json()["status"] == "duplicate"
    upd = ls_body("ANNOTATION_UPDATED", updated="2026-07-23T11:00:00Z")
    assert c.post("/label-studio/events", json=upd, headers=LS_AUTH).json()["status"] == "emitted"
    assert [e.event for e in rec.events] == [LABELS_READY, LABELS_READY]
    ev = rec.events[0]
    assert ev.resource.id == "lakeloop.label-studio.project.12"
    assert ev.payload == {"project_id": 12, "annotation_id": 7, "task_id": 3, "action": "ANNOTATION_CREATED",
                          "answers": 1}


def test_label_studio_burst_is_announced_once_after_a_quiet_period(ledger: Ledger, rec: Recorder) -> None:
    import time

    app = create_app(BridgeConfig(**SECRETS, ledger=ledger, emitter=rec, labels_quiet_s=0.5))
    with TestClient(app) as c:  # the context keeps the app's event loop (and its timers) running
        statuses = [c.post("/label-studio/events", json=ls_body(ann=i), headers=LS_AUTH).json()["status"]
                    for i in range(20)]
        assert statuses == ["queued"] * 20
        assert c.post("/label-studio/events", json=ls_body(ann=3), headers=LS_AUTH).json()["status"] == "duplicate"
        assert rec.events == [], "nothing is announced while answers keep coming"
        deadline = time.monotonic() + 5
        while not rec.events and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.7)
    assert len(rec.events) == 1
    assert rec.events[0].payload["answers"] == 20 and rec.events[0].payload["annotation_id"] == 19


def test_label_studio_announcement_is_retried_when_prefect_refuses(ledger: Ledger, rec: Recorder) -> None:
    import time

    rec.fail = True
    app = create_app(BridgeConfig(**SECRETS, ledger=ledger, emitter=rec, labels_quiet_s=0.3))
    with TestClient(app) as c:
        c.post("/label-studio/events", json=ls_body(ann=1), headers=LS_AUTH)
        time.sleep(0.6)
        assert rec.events == []
        rec.fail = False
        deadline = time.monotonic() + 5
        while not rec.events and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(rec.events) == 1 and rec.events[0].payload["answers"] == 1


def test_answers_arriving_during_an_announcement_are_announced_later(ledger: Ledger) -> None:
    """Issue 10: `announce` deleted `pending[...][:len(batch)]` after awaiting the emit, and `batch` was the
    same list, so answers that arrived during the emit were deleted without ever being announced."""
    import threading
    import time

    entered, release = threading.Event(), threading.Event()
    events: list[Event] = []

    def slow(event: Event) -> None:
        entered.set()
        release.wait(5)
        events.append(event)

    app = create_app(BridgeConfig(**SECRETS, ledger=ledger, emitter=slow, labels_quiet_s=0.2))
    with TestClient(app) as c:
        for i in range(3):
            c.post("/label-studio/events", json=ls_body(ann=i), headers=LS_AUTH)
        assert entered.wait(5), "the first announcement started"
        for i in range(3, 5):  # while the emit is in flight
            assert c.post("/label-studio/events", json=ls_body(ann=i), headers=LS_AUTH).json()["status"] == "queued"
        release.set()
        deadline = time.monotonic() + 5
        keys = [annotation_key(12, f"{i}@2026-07-23T10:00:00Z") for i in range(5)]
        # the keys are completed after the emit returns, so wait for that too (on a loaded CI machine the
        # client could otherwise shut the app down between the second emit and its completion)
        while not (sum(e.payload["answers"] for e in events) >= 5 and all(map(ledger.is_settled, keys))) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
    assert [e.payload["answers"] for e in events] == [3, 2]
    assert all(ledger.is_settled(k) for k in keys)


def test_answer_keys_are_done_only_after_their_announcement(ledger: Ledger, rec: Recorder) -> None:
    """Issue 10: keys were marked done when queued, so a bridge that died before announcing them left
    answers marked processed that no labels.ready ever carried."""
    import time

    rec.fail = True
    app = create_app(BridgeConfig(**SECRETS, ledger=ledger, emitter=rec, labels_quiet_s=0.2))
    key = annotation_key(12, "1@2026-07-23T10:00:00Z")
    with TestClient(app) as c:
        c.post("/label-studio/events", json=ls_body(ann=1), headers=LS_AUTH)
        time.sleep(0.5)  # at least one failed announcement
        d = ledger.get(key)
        assert d is not None and d.state == "claimed" and not ledger.is_settled(key)
        assert c.post("/label-studio/events", json=ls_body(ann=1), headers=LS_AUTH).json()["status"] == "duplicate"
        rec.fail = False
        deadline = time.monotonic() + 5
        while not ledger.is_settled(key) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert ledger.is_settled(key) and len(rec.events) == 1


def test_label_studio_other_actions_ignored_and_malformed_rejected(ledger: Ledger, rec: Recorder) -> None:
    c = client(ledger, rec)
    assert c.post("/label-studio/events", json={"action": "PROJECT_UPDATED", "project": {"id": 1}},
                  headers=LS_AUTH).json()["status"] == "ignored"
    r = c.post("/label-studio/events", json={"action": "ANNOTATION_CREATED", "project": {"id": 1}}, headers=LS_AUTH)
    assert r.status_code == 400
    r = c.post("/label-studio/events", json={"annotation": {"id": 1}}, headers=LS_AUTH)
    assert r.status_code == 400 and "action" in r.json()["error"]
    assert rec.events == []


# ---- pre-merge endpoint --------------------------------------------------------------------------
def test_pre_merge_blocks_with_gate_message(ledger: Ledger, rec: Recorder) -> None:
    seen: list[LakeFSHookEvent] = []

    def gate(ev: LakeFSHookEvent) -> MergeCheck:
        seen.append(ev)
        return MergeCheck(False, ["data/a.parquet"], ["data/a.parquet: failing checks: min:tenure_months (2 rows)"])

    body = post_commit("src1", event_type="pre-merge", branch_id="main", merge_source="ingest-1")
    r = client(ledger, rec, gate).post("/lakefs/pre-merge", json=body, headers=AUTH)
    assert r.status_code == 400
    assert "min:tenure_months" in r.json()["message"]
    assert seen[0].branch_id == "main" and seen[0].source_ref == "src1"
    # post events reaching the gate endpoint are not its business
    r = client(ledger, rec, gate).post("/lakefs/pre-merge", json=post_commit(), headers=AUTH)
    assert r.status_code == 200 and r.json()["status"] == "ignored"
    assert rec.events == []


# ---- actions file --------------------------------------------------------------------------------
def test_actions_yaml_is_a_valid_lakefs_action() -> None:
    from infra.lakefs_server.hooks import parse_action

    text = render_actions_yaml("http://127.0.0.1:8765/", None, token_env="LAKEFSACTION_LAKELOOP_TOKEN")
    action = parse_action("_lakefs_actions/lakeloop.yaml", text.encode())
    assert action.name == "lakeloop"
    data = yaml.safe_load(text)
    on = data.get("on", data.get(True))
    assert set(on) == {"post-commit", "post-merge", "pre-merge"}
    assert on["pre-merge"] == {"branches": ["main"]}
    urls = [h["properties"]["url"] for h in data["hooks"]]
    assert urls == ["http://127.0.0.1:8765/lakefs/events", "http://127.0.0.1:8765/lakefs/pre-merge"]
    assert all(h["properties"]["headers"] == {"X-Lakeloop-Token": "{{ ENV.LAKEFSACTION_LAKELOOP_TOKEN }}"}
               for h in data["hooks"])
    with pytest.raises(ValueError, match="LAKEFSACTION_"):
        render_actions_yaml("http://x", token_env="LAKELOOP_TOKEN")


# ---- ledger ------------------------------------------------------------------------------------------
def test_ledger_lease_expiry_and_order(tmp_path: Path) -> None:
    lg = Ledger(tmp_path / "l.sqlite3", lease_seconds=0.0)
    assert lg.claim("k1", "lakefs", "a")
    assert lg.claim("k1", "lakefs", "b")  # a's lease expired (crashed owner): b takes over
    lg.complete("k1", "b")
    assert not lg.claim("k1", "lakefs", "c")
    lg2 = Ledger(tmp_path / "l.sqlite3")
    assert lg2.run_once("k2", "lakefs", "x", lambda: None)
    with pytest.raises(RuntimeError):
        lg2.run_once("k3", "lakefs", "x", lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    assert lg2.get("k3") is None  # released for a retry
    assert [d.key for d in lg2.done()] == ["k1", "k2"]


# ---- prefect.yaml contract ----------------------------------------------------------------------
def test_prefect_yaml_triggers_match_flow_signatures_and_payloads() -> None:
    import importlib
    import inspect
    import re

    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    from infra.deploy import load_deployments
    from lakeloop.events import PAYLOADS

    root = Path(__file__).resolve().parents[1]
    deps = load_deployments(root / "prefect.yaml", {"LAKELOOP_PROJECT_ROOT": str(root),
                                                    "LAKELOOP_PREFECT_WORK_POOL": "pool", "LAKEFS_REPOSITORY": "r"})
    names = {d["name"] for d in deps}
    assert names == {"on-commit", "retrain", "build-ensemble", "request-relabel", "ingest-labels",
                     "batch-inference", "monitor"}
    field_ref = re.compile(r"event\.payload\.(\w+)")
    for d in deps:
        path, func_name = d["entrypoint"].rsplit(":", 1)
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        params = inspect.signature(getattr(module, func_name).fn).parameters
        required = {n for n, p in params.items() if p.default is inspect.Parameter.empty}
        assert d["work_pool"]["name"] == "pool"
        assert d.get("triggers") or d.get("schedules"), f"{d['name']} never starts by itself"
        for sched in d.get("schedules") or []:
            given = set(sched.get("parameters") or {})
            assert required <= given <= set(params), d["name"]
        for t in d.get("triggers") or []:
            trig = DeploymentEventTrigger(**t)
            assert trig.parameters is not None
            assert required <= set(trig.parameters) <= set(params), d["name"]
            for event in trig.expect:
                fields = PAYLOADS[event].model_fields
                for value in trig.parameters.values():
                    if not isinstance(value, str):
                        continue  # a constant such as retrain's `force: false`
                    refs = field_ref.findall(value)
                    assert value.startswith("{{") and refs, f"{d['name']}: {value} is not an event template"
                    assert set(refs) <= set(fields), f"{d['name']}: {value} reads fields {event} lacks"
        for sched in d.get("schedules") or []:
            assert required <= set(sched["parameters"]) <= set(params), d["name"]
    on_commit = next(d for d in deps if d["name"] == "on-commit")
    assert set(on_commit["triggers"][0]["expect"]) == {"lakefs.commit.created", "lakefs.merge.completed"}
    assert on_commit["triggers"][0]["match"] == {"prefect.resource.id": "lakefs.repo.*"}
    assert any(s["cron"] == "0 3 1 * *" for d in deps if d["name"] == "retrain" for s in d["schedules"])


def test_load_deployments_requires_env_and_keeps_event_templates(tmp_path: Path) -> None:
    from infra.deploy import DeployError, load_deployments

    f = tmp_path / "prefect.yaml"
    f.write_text("deployments:\n- name: x\n  entrypoint: a.py:f\n  work_pool: {name: '{{ $POOL }}'}\n"
                 "  triggers: [{expect: [e], parameters: {c: '{{ event.payload.c }}'}}]\n")
    (d,) = load_deployments(f, {"POOL": "p1"})
    assert d["work_pool"]["name"] == "p1"
    assert d["triggers"][0]["parameters"] == {"c": "{{ event.payload.c }}"}
    with pytest.raises(DeployError, match=r"\$POOL"):
        load_deployments(f, {})


def test_emit_payloads_are_checked_against_the_event_contract() -> None:
    from lakeloop.events import DRIFT_DETECTED, MODEL_PROMOTED, payload_dict

    # what flows/monitor.py sends: `reasons`, no `reason` -- accepted, extras kept
    d = payload_dict(DRIFT_DETECTED, {"repository": "churn", "branch": "main", "commit_id": "c1",
                                      "reasons": ["tenure_months drifted"], "source": "monitor"})
    assert d["reasons"] == ["tenure_months drifted"] and d["reason"] is None and d["source"] == "monitor"
    assert payload_dict(MODEL_PROMOTED, {"repository": "churn", "model_name": "churn", "version": 3,
                                         "kind": "ensemble"})["kind"] == "ensemble"
    with pytest.raises(EmitError, match="commit_id"):
        payload_dict(DRIFT_DETECTED, {"repository": "churn", "branch": "main"})
