"""The verdict of a branch experiment, as the report its owners read (markdown) and tools read (JSON).

Why the gate's own result: "would this branch make the model worse?" is the same
question the gate asks before a promotion, asked on the same trusted rows, so a
branch that the verdict calls worse is one the gate would refuse after a merge.
"""

from __future__ import annotations

import json

from lakeloop.outcomes import ExperimentOutcome
from tasks.model.gate import GateResult


def verdict_of(result: GateResult) -> tuple[str, str]:
    """`worse` (the gate would refuse it), `better` (evidence it improves), else `not-worse`; with a summary."""
    delta = result.auc_delta
    vs = f"AUC {result.auc:.4f}" if result.auc is not None else "AUC n/a"
    if result.champion_auc is not None:
        vs += f" vs champion v{result.champion_version} {result.champion_auc:.4f}"
    if delta is not None:
        vs += f", difference to the best champion {delta}"
    if not result.passed:
        return "worse", f"the model gets worse: {vs}; " + "; ".join(result.reasons)
    if delta is not None and delta.low > 0:
        return "better", f"the model gets better: {vs}"
    return "not-worse", f"no evidence the model gets worse: {vs}"


def report_files(outcome: ExperimentOutcome, result: GateResult, links: dict[str, str]) -> dict[str, tuple[bytes,
                                                                                                           str]]:
    """`.md` and `.json` report bodies with their content types."""
    doc = {
        "branch": outcome.branch, "commit_id": outcome.commit_id, "verdict": outcome.verdict,
        "summary": outcome.summary, "trusted_commit": outcome.eval_commit,
        "candidate": outcome.candidate.model_dump() if outcome.candidate else None,
        "champion_version": outcome.champion_version, "drifted_columns": outcome.drifted,
        "gate": result.model_dump(mode="json"), "links": links,
    }
    return {".md": (_markdown(outcome, result, links).encode(), "text/markdown"),
            ".json": (json.dumps(doc, indent=2, sort_keys=True).encode(), "application/json")}


def _markdown(outcome: ExperimentOutcome, result: GateResult, links: dict[str, str]) -> str:
    cand = outcome.candidate
    lines = [f"# Experiment `{outcome.branch}` @ `{outcome.commit_id[:12]}`: **{outcome.verdict}**", "",
             outcome.summary, "",
             f"Candidate: [{cand.name} v{cand.version}]({links.get('mlflow', '')}) (never champion). "
             if cand else "",
             f"Judged on {result.rows} holdout rows of the watched branch at "
             f"[`{outcome.eval_commit[:12]}`]({links.get('trusted_commit', '')}).", "",
             "| check | result | detail |", "|---|---|---|"]
    lines += [f"| {c.name} | {'pass' if c.passed else '**fail**'} | {c.detail} |" for c in result.checks]
    lines += ["", "| metric | candidate | champion | difference |", "|---|---:|---:|---|"]
    lines.append(f"| AUC | {_f(result.auc)} | {_f(result.champion_auc)} | {result.auc_delta or ''} |")
    lines.append(f"| value per row | {_f(result.business_value)} | {_f(result.champion_business_value)} | "
                 f"{result.business_delta or ''} |")
    if result.slices:
        lines += ["", "| slice | rows | candidate AUC | champion AUC | result |", "|---|---:|---:|---:|---|"]
        lines += [f"| {s.name} | {s.rows} | {_f(s.auc)} | {_f(s.champion_auc)} | "
                  f"{'pass' if s.passed else 'fail'}{'' if s.gated else ' (not gated)'} |" for s in result.slices]
    lines += ["", f"Drifted columns against the champion's training data: {', '.join(outcome.drifted) or 'none'}."]
    return "\n".join(lines) + "\n"


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"
