"""Unit tests of the data-centric loop's pure parts: ranking, ledgers, agreement, corrections, task JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lakeloop.adapters.label_studio import UNSURE, Annotation, LabelingError
from lakeloop.spec import DatasetSpec
from lakeloop.task_outbox import Outbox
from tasks.data.label_overlay import apply_corrections, overlay_corrections
from tasks.labels.corrections import AgreementPolicy, AppliedLedger, CorrectionError, resolve
from tasks.labels.label_issues import (
    IssueReason,
    LabelIssueError,
    ReviewLedger,
    rank_label_issues,
    row_hashes,
    select_budget,
)
from tasks.labels.task_view import labeling_config, task_payloads

SPEC = DatasetSpec.from_yaml(Path(__file__).resolve().parents[1] / "examples" / "churn" / "spec.yaml")


def _noisy_problem(n: int = 2000, flips: int = 100, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray,
                                                                              set[str]]:
    rng = np.random.default_rng(seed)
    p = 1 / (1 + np.exp(-rng.choice([-1, 1], n) * rng.uniform(2.5, 6, n)))  # confident true probabilities
    y = (rng.random(n) < p).astype(int)
    ids = [f"r{i:05d}" for i in range(n)]
    flip = rng.choice(n, flips, replace=False)
    y[flip] = 1 - y[flip]
    proba = np.column_stack([1 - p, p])
    return ids, y, proba, {ids[i] for i in flip}


def test_ranking_finds_flipped_labels_first() -> None:
    ids, y, proba, flipped = _noisy_problem()
    issues = rank_label_issues(ids, y, proba, threshold=0.5)
    top = issues[:60]
    precision = np.mean([i.id in flipped for i in top])
    assert precision >= 0.8
    assert all(IssueReason.likely_mislabeled in i.reasons for i in top)
    assert [i.score for i in issues] == sorted((i.score for i in issues), reverse=True)
    # random selection would find ~5% flipped rows: the ranking beats it by far
    assert precision > 5 * len(flipped) / len(ids)


def test_member_disagreement_and_ambiguity_reasons() -> None:
    n = 200
    ids = [f"r{i}" for i in range(n)]
    p = np.full(n, 0.05)
    p[10] = 0.36  # near the business threshold 0.35
    y = np.zeros(n, dtype=int)
    proba = np.column_stack([1 - p, p])
    m1, m2 = proba.copy(), proba.copy()
    m1[20] = [0.95, 0.05]
    m2[20] = [0.05, 0.95]  # the two members disagree on row 20 only
    issues = {i.id: i for i in rank_label_issues(ids, y, proba, member_proba=[m1, m2], threshold=0.35)}
    assert IssueReason.ambiguous in issues["r10"].reasons
    assert IssueReason.members_disagree in issues["r20"].reasons
    assert issues["r20"].disagreement == pytest.approx(1.0)
    assert "r30" not in issues  # confident, agreed, far from threshold: not worth a task


def test_invalid_inputs_name_the_row() -> None:
    ids, y, proba, _ = _noisy_problem(50, 5)
    bad = proba.copy()
    bad[7] = [np.nan, 1.0]
    with pytest.raises(LabelIssueError, match="r00007"):
        rank_label_issues(ids, y, bad)
    y2 = y.copy()
    y2[3] = 4
    with pytest.raises(LabelIssueError, match="row 3"):
        rank_label_issues(ids, y2, proba)
    with pytest.raises(LabelIssueError, match="shape"):
        rank_label_issues(ids, y, proba[:10])


def test_budget_skips_reviewed_rows_unless_label_or_data_changed(tmp_path: Path) -> None:
    from infra.demo.synth import synth_batch

    df = synth_batch(200, seed=5, label_noise=0.1).data
    ids = df.get_column("customer_id").to_list()
    y = (df.get_column("churn") == "yes").cast(pl.Int64).to_numpy()
    proba = np.column_stack([np.where(y == 1, 0.9, 0.1), np.where(y == 1, 0.1, 0.9)])  # every label contradicted
    issues = rank_label_issues(ids, y, proba)
    ledger = ReviewLedger.at(tmp_path / "state")
    hashes = row_hashes(df, SPEC)
    first = select_budget(issues, 20, ledger=ledger, row_hashes=hashes)
    assert len(first) == 20
    assert ledger.mark({i.id: hashes[i.id] for i in first}, "r1") == 20
    second = select_budget(issues, 20, ledger=ledger, row_hashes=hashes)
    assert not {i.id for i in first} & {i.id for i in second}
    # the label of one reviewed row changes: it is eligible again
    changed_id = first[0].id
    df2 = df.with_columns(pl.when(pl.col("customer_id") == changed_id)
                          .then(pl.when(pl.col("churn") == "yes").then(pl.lit("no")).otherwise(pl.lit("yes")))
                          .otherwise(pl.col("churn")).alias("churn"))
    hashes2 = row_hashes(df2, SPEC)
    assert hashes2[changed_id] != hashes[changed_id]
    assert sum(hashes2[k] != hashes[k] for k in hashes) == 1
    third = select_budget(issues, 1000, ledger=ledger, row_hashes=hashes2)
    assert changed_id in {i.id for i in third}
    assert not ({i.id for i in first} - {changed_id}) & {i.id for i in third}
    with pytest.raises(LabelIssueError, match="row_hashes"):
        select_budget(issues, 5, ledger=ledger)


# ---- agreement and corrections ---------------------------------------------
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _ann(aid: int, row: str, choice: str | None, who: int, minutes: int = 0, skipped: bool = False) -> Annotation:
    t = T0 + timedelta(minutes=minutes)
    return Annotation(annotation_id=aid, task_id=100 + int(row[1:]), project_id=1, row_id=row, row_hash="h",
                      choice=choice, skipped=skipped, annotator=f"a{who}@x", annotator_id=who,
                      created_at=t, updated_at=t, lead_time=5.0)


CURRENT = {"r1": "no", "r2": "no", "r3": "yes", "r4": "no", "r5": "no", "r6": "yes"}


def _history(n: int = 60) -> list[Annotation]:
    """Earlier rows a1 and a2 both answered alike: what CROWDLAB learns the two annotators' reliability from."""
    return [_ann(1000 + 2 * i + k, f"h{i}", "no", k + 1) for i in range(n) for k in range(2)]


HISTORY_CURRENT = {f"h{i}": "no" for i in range(60)}
CONFIDENT = {r: np.array([0.5, 0.5]) for r in CURRENT}  # the model has no opinion on the reviewed rows


def test_resolve_applies_the_agreement_policy(tmp_path: Path) -> None:
    ledger = AppliedLedger.at(tmp_path)
    history = _history()
    ledger.mark(history, "earlier")  # applied before: informs the annotators' quality, not decided again
    anns = [
        _ann(1, "r1", "yes", 1), _ann(2, "r1", "yes", 2, 1),  # two agree: corrected
        _ann(3, "r2", "yes", 1),  # one voice: waits for Label Studio's second annotator
        _ann(4, "r3", "yes", 1), _ann(5, "r3", "yes", 2),  # agree with current label: confirmed
        _ann(6, "r4", "yes", 1), _ann(7, "r4", "no", 2, 2),  # split: one more annotator (task 104 needs 3)
        _ann(8, "r5", UNSURE, 1), _ann(9, "r5", None, 2, skipped=True),  # unsure: stays flagged
        _ann(10, "r6", "no", 9),  # trusted reviewer alone suffices
    ]
    policy = AgreementPolicy(min_annotators=2, max_annotators=3, min_quality=0.8, trusted_reviewers=["a9@x"])
    res = resolve(history + anns, CURRENT | HISTORY_CURRENT, policy, SPEC, ledger=ledger, model_proba=CONFIDENT)
    c = {r["id"]: r for r in res.corrections.iter_rows(named=True)}
    assert set(c) == {"r1", "r6"}
    assert (c["r1"]["old_label"], c["r1"]["new_label"]) == ("no", "yes")
    assert c["r1"]["annotators"] == ["a1@x", "a2@x"]
    assert c["r1"]["last_annotated_at"] - c["r1"]["first_annotated_at"] == timedelta(minutes=1)
    assert c["r1"]["consensus_quality"] >= policy.min_quality
    assert c["r6"]["new_label"] == "no"
    assert sorted(res.pending) == ["r2", "r4"]
    assert res.escalate == {104: 3}
    assert res.confirmed == ["r3"]
    assert res.unsure == ["r5"]
    assert set(res.decided_ids) == {1, 2, 4, 5, 10}
    assert res.consensus is not None and {a.annotator for a in res.consensus.annotators} == {"a1@x", "a2@x", "a9@x"}

    # a third answer on the split row: a team that accepts a 2-1 consensus follows the two who agree
    third = _ann(11, "r4", "yes", 3, 3)
    again = resolve(history + anns + [third], CURRENT | HISTORY_CURRENT, policy.model_copy(update={"min_quality": 0.6}),
                    SPEC, ledger=ledger, model_proba=CONFIDENT)
    r4 = again.corrections.filter(pl.col("id") == "r4").row(0, named=True)
    assert (r4["new_label"], r4["annotators"]) == ("yes", ["a1@x", "a3@x"])
    assert again.escalate == {}
    # at the cap a consensus still too unsure is disputed: it stays flagged, the data unchanged
    strict = AgreementPolicy(min_annotators=2, max_annotators=2, min_quality=0.999)
    capped = resolve(anns[5:7], CURRENT, strict, SPEC, model_proba=CONFIDENT)
    assert capped.disputed == ["r4"] and capped.corrections.height == 0 and capped.escalate == {}


def test_latest_answer_per_annotator_counts() -> None:
    anns = [_ann(1, "r1", "no", 1, 0), _ann(1, "r1", "yes", 1, 5), _ann(2, "r1", "yes", 2, 6)]
    res = resolve(_history() + anns, CURRENT | HISTORY_CURRENT, AgreementPolicy(), SPEC)
    assert res.corrections["id"].to_list() == ["r1"]


def test_applied_ledger_never_applies_twice_but_sees_edits(tmp_path: Path) -> None:
    ledger = AppliedLedger.at(tmp_path)
    anns = [*_history(), _ann(1, "r1", "yes", 1), _ann(2, "r1", "yes", 2)]
    current = CURRENT | HISTORY_CURRENT
    res = resolve(anns, current, AgreementPolicy(), SPEC, ledger=ledger)
    assert res.corrections.height == 1
    assert ledger.mark(res.decided, "round-1") == len(anns)
    again = resolve(anns, current, AgreementPolicy(), SPEC, ledger=ledger)
    assert again.corrections.height == 0 and not again.pending and not again.confirmed
    # the same annotation, edited later, is seen again; alone, it is accepted when the model agrees with it
    edited = [_ann(1, "r1", "no", 1, minutes=30)]
    assert resolve(edited, {"r1": "yes"}, AgreementPolicy(min_annotators=1), SPEC, ledger=ledger,
                   model_proba={"r1": np.array([0.9, 0.1])}).corrections["new_label"].to_list() == ["no"]
    assert resolve(edited, {"r1": "yes"}, AgreementPolicy(min_annotators=1), SPEC, ledger=ledger,
                   model_proba={"r1": np.array([0.3, 0.7])}).pending == ["r1"]


def test_resolve_rejects_bad_input() -> None:
    with pytest.raises(CorrectionError, match="annotation 1 .*'maybe'"):
        resolve([_ann(1, "r1", "maybe", 1)], CURRENT, AgreementPolicy(), SPEC)
    with pytest.raises(CorrectionError, match="r99"):
        resolve([_ann(1, "r99", "yes", 1)], CURRENT, AgreementPolicy(), SPEC)


def test_overlay_last_correction_wins_and_apply_validates() -> None:
    df = pl.DataFrame({"customer_id": ["a", "b", "c"], "churn": ["no", "no", "yes"], "x": [1, 2, 3]})
    round1 = pl.DataFrame({"id": ["a", "c"], "old_label": ["no", "yes"], "new_label": ["yes", "no"]})
    round2 = pl.DataFrame({"id": ["a"], "old_label": ["yes"], "new_label": ["no"]})
    out = overlay_corrections(df, [round1, round2], SPEC)
    assert out["churn"].to_list() == ["no", "no", "no"]
    assert out.columns == df.columns and out["x"].to_list() == [1, 2, 3]
    assert overlay_corrections(df, [round2, round1], SPEC)["churn"].to_list() == ["yes", "no", "no"]
    with pytest.raises(CorrectionError, match="'maybe'"):
        apply_corrections(df, pl.DataFrame({"id": ["a"], "new_label": ["maybe"]}), SPEC)
    with pytest.raises(CorrectionError, match="twice"):
        apply_corrections(df, pl.concat([round1, round1]), SPEC)


# ---- task JSON and outbox ---------------------------------------------------
def test_config_and_payloads_leave_pii_out() -> None:
    from infra.demo.synth import synth_batch

    df = synth_batch(5, seed=1).data
    cfg = labeling_config(SPEC)
    for choice in [*SPEC.classes, UNSURE]:
        assert f'<Choice value="{choice}"/>' in cfg
    proba = np.array([[0.2, 0.8]] * 5)
    tasks = task_payloads(df, SPEC, proba, model_version="m7", round_id="r1")
    assert len(tasks) == 5
    for task, email in zip(tasks, df["email"].to_list(), strict=True):
        assert "email" not in json.dumps(task) and (email is None or email not in json.dumps(task))
    assert all("<th title=" in tasks[0]["data"]["features"] and f">{f.name}<" in tasks[0]["data"]["features"]
               for f in SPEC.features if not f.pii)
    pred = tasks[0]["predictions"][0]
    assert tasks[0]["data"]["model_run"] == "m7" and pred["score"] == pytest.approx(0.8)
    assert pred["result"][0]["value"]["choices"] == ["yes"]
    with pytest.raises(LabelingError, match="shape"):
        task_payloads(df, SPEC, proba[:2])
    bad_spec = SPEC.model_copy(update={"classes": ["unsure", "sure"], "positive_class": "sure"})
    with pytest.raises(LabelingError, match="reserved"):
        labeling_config(bad_spec)


def test_outbox_is_durable_and_deduplicated(tmp_path: Path) -> None:
    from infra.demo.synth import synth_batch

    tasks = task_payloads(synth_batch(4, seed=2).data, SPEC)
    ob = Outbox(tmp_path / "outbox.sqlite")
    assert ob.enqueue(7, tasks) == 4
    assert ob.enqueue(7, tasks) == 0
    reopened = Outbox(tmp_path / "outbox.sqlite")
    assert len(reopened.pending(7)) == 4
    reopened.mark_sent(7, [(tasks[0]["data"]["row_id"], tasks[0]["data"]["row_hash"], 55)])
    assert len(Outbox(tmp_path / "outbox.sqlite").pending()) == 3
