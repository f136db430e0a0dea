"""The README's figures table, rendered from `bench/results.json` so no figure is typed by hand.

`python -m bench.readme_figures` rewrites the block between the markers; a test checks that the README
holds exactly what this renders. Each row is a template over dotted keys of results.json.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "bench" / "results.json"
START, END = "<!-- figures:start -->", "<!-- figures:end -->"

ROWS: list[tuple[str, str]] = [
    ("`lakefs.upload_vs_copy`, `lakefs.read_vs_copy`",
     "upload+commit and read through the SDK vs plain file copies of the same bytes: "
     "{lakefs.upload_vs_copy:.2f}× and {lakefs.read_vs_copy:.2f}× (md5 alone, the checksum lakeFS requires: "
     "{lakefs.md5_vs_copy:.2f}×; load {lakefs.load_avg_1m:.1f} on {lakefs.cores} cores)"),
    ("`validate`", "{validate.rows:,} rows validated in {validate.validate_s:.1f} s wall; "
                   "{validate.validate_vs_parquet_read:.1f}× a parquet read"),
    ("`spine` ({spine.rows:,} rows)",
     "read {spine.stages.read_parquet.wall_s:.1f} s, validate {spine.stages.validate.wall_s:.1f} s, "
     "profile {spine.stages.profile_fresh.wall_s:.1f} s (cached: {spine.profile_cached_vs_fresh:.2f}× of that), "
     "drift {spine.stages.drift.wall_s:.2f} s, CV training {spine.stages.train_cv.wall_s:.0f} s "
     "({spine.train_share_of_total:.0%} of the total)"),
    ("`scale.commit_cost_16_vs_1`, `scale.trainset_16_vs_1`",
     "a {scale.commit_rows:,}-row commit onto 16 objects of {scale.rows_per_object:,} rows vs onto 1: "
     "`commit_batch` {scale.commit_cost_16_vs_1:.2f}× (goal ≤ 1.5; {scale.table.1.commit_batch_s:.3f} s, "
     "{scale.table.4.commit_batch_s:.3f} s, {scale.table.16.commit_batch_s:.3f} s at 1/4/16 objects), "
     "`training_set` {scale.trainset_16_vs_1:.1f}× (goal ≤ 20; {scale.table.1.training_set_s:.3f} s, "
     "{scale.table.4.training_set_s:.3f} s, {scale.table.16.training_set_s:.3f} s)"),
    ("`train.overhead_vs_xgboost` ({train.rows:,} rows)",
     "`train_xgb` vs bare `xgboost.train` fitting the same boosters: {train.overhead_vs_xgboost:.3f}× "
     "(goal ≤ {train.goal:.2f}×; the extra steps timed alone: {train.explained_overhead_vs_xgboost:.3f}×); "
     "with the review committee and OOF frame {train.with_committee_vs_xgboost:.2f}× "
     "(load {train.load_avg_1m:.1f} on {train.cores} cores)"),
    ("`profile.fast_vs_whylogs` ({profile.rows:,} rows)",
     "the churn spec's {profile.columns} profiled columns: {profile.fast_vs_whylogs:.1f}× less CPU than `whylogs.log` "
     "({profile.fast_cpu_s:.2f} s vs {profile.whylogs_cpu_s:.2f} s, load {profile.load_avg_1m:.1f} on "
     "{profile.cores} cores; goal ≥ {profile.goal}×)"),
    ("`events.commit_to_run_vs_bare`", "commit → flow-run median latency vs a bare `emit_event`: "
                                       "{events.commit_to_run_vs_bare:.2f}× (goal ≤ {events.goal_ratio:g}×)"),
    ("`labels.precision_at_budget`",
     "{labels.precision_at_budget:.2f} (cleanlab alone {labels.baseline_cleanlab_precision_at_budget:.2f}, "
     "random {labels.baseline_random_precision_at_budget:.2f}, ranking by the generator's true probabilities "
     "{labels.oracle_precision_at_budget:.2f}: the ceiling on this data)"),
    ("`labels.auc_gap_to_clean`", "{labels.auc_gap_to_clean:.4f} after one round "
                                  "({labels.auc_gap_to_clean_before:.4f} before)"),
    ("`labels.consensus_vs_majority`",
     "consensus (CROWDLAB) {labels.consensus.consensus_accuracy:.3f} vs majority vote "
     "{labels.consensus.majority_accuracy:.3f} on the same two answers per row "
     "({labels.consensus.consensus_minus_majority:+.3f}); after the policy's third answer for "
     "{labels.consensus.escalated_share:.0%} of rows, consensus "
     "{labels.consensus.final_consensus_accuracy:.3f} and majority "
     "{labels.consensus.final_majority_accuracy:.3f}, "
     "{labels.consensus.accepted_share:.0%} of rows accepted at "
     "{labels.consensus.accepted_accuracy:.3f}; "
     "annotators erring 2%/5%/15% estimated at "
     "{labels.consensus.annotator_error.careful.estimated:.3f}/"
     "{labels.consensus.annotator_error.steady.estimated:.3f}/"
     "{labels.consensus.annotator_error.hasty.estimated:.3f} "
     "(worst gap over seeds {labels.consensus.max_abs_error_gap:.3f}, goal ≤ 0.04)"),
    ("`ensemble.pyfunc_overhead`", "{ensemble.pyfunc_overhead:+.0%} CPU vs raw member predicts "
                                   "(goal ≤ {ensemble.goal_overhead:.0%})"),
    ("`monitor.false_alarm_rate`, `monitor.detection_rate`",
     "{monitor.false_alarm_rate:.3f} of stationary batches flagged (goal ≤ 0.05), "
     "{monitor.detection_rate:.2f} of drifted ones caught (goal ≥ 0.95)"),
    ("`monitor.cbpe_abs_error`", "estimated vs realized AUC: mean absolute error {monitor.cbpe_abs_error:.4f} "
                                 "(worst batch {monitor.cbpe_abs_error_max:.4f}; goal ≤ 0.03)"),
    ("`fuzz.lakefs_cases`, `fuzz.bridge_cases`",
     "schemathesis: {fuzz.lakefs_cases} cases against the local lakeFS server ({fuzz.lakefs_failures} failures), "
     "{fuzz.bridge_cases} against the bridge ({fuzz.bridge_failures} failures); "
     "{fuzz.seeded_reads_changed} of {fuzz.seeded_reads} seeded commit and object reads changed"),
    ("`bridge.webhooks_per_s`, `bridge.p99_ms`",
     "{bridge.webhooks_per_s:g} webhooks/s sustained into a real Prefect server (goal ≥ 200), p99 "
     "{bridge.p99_ms:g} ms (goal ≤ 100; Prefect's own POST p99 {bridge.prefect_post_p99_ms:g} ms), "
     "lost {bridge.lost}, duplicated {bridge.duplicated} (load average {bridge.load_avg_1m:g} on "
     "{bridge.cores} cores)"),
]


def _lookup(results: dict[str, Any], dotted: str) -> Any:
    value: Any = results
    for part in dotted.split("."):
        value = value[part]
    return value


def _fill(template: str, results: dict[str, Any]) -> str:
    def one(m: re.Match[str]) -> str:
        return format(_lookup(results, m["key"]), m["fmt"] or "")
    return re.sub(r"\{(?P<key>[a-z_][a-z0-9_.]*)(?::(?P<fmt>[^}]*))?\}", one, template)


def render(results: dict[str, Any] | None = None) -> str:
    data = results if results is not None else json.loads(RESULTS.read_text())
    lines = ["| key | figure |", "|---|---|"]
    for key, template in ROWS:
        try:
            lines.append(f"| {_fill(key, data)} | {_fill(template, data)} |")
        except KeyError as e:  # a bench not run yet: say so rather than print a stale number
            lines.append(f"| {key} | not measured yet ({e.args[0]!r} missing from results.json) |")
    return "\n".join(lines)


def readme_block(text: str) -> str:
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def main() -> None:
    text = README.read_text()
    head, rest = text.split(START, 1)
    README.write_text(f"{head}{START}\n{render()}\n{END}{rest.split(END, 1)[1]}")
    print(render())


if __name__ == "__main__":
    main()
