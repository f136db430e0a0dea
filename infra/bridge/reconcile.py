"""Replay lakeFS commits the bridge never saw, so a bridge outage loses nothing.

lakeFS post-commit hooks are fire-and-forget: if the bridge is down the call is
only logged. The reconciler compares every branch's history with the ledger
and publishes the missing commits oldest first, through the same
claim-emit-complete step the bridge uses, so a commit reaching both is still
processed once.

Which branch a commit belongs to: the branch on whose first-parent chain it
lies (where it was committed or merged into). A commit reachable only through
a merge's second parent on branches that no longer exist is reported as
unattributed; the merge commit itself is what carries it forward.
Only branches the branch policy relays are walked (watched and experiment
branches; `lakeloop.branches`): a commit on any other branch starts nothing.
History older than the ledger's baseline for the repository (when lakeloop
first watched it) is not replayed.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from prefect.events import Event

from lakeloop.adapters.lakefs import CommitInfo, Lake
from lakeloop.branches import BranchPolicy
from lakeloop.events import CommitPayload, commit_event, is_internal_commit
from lakeloop.state import Ledger, commit_key

log = logging.getLogger("infra.bridge.reconcile")

Emitter = Callable[[Event], None]
BASELINE_SLACK = timedelta(seconds=2)  # lakeFS commit times have 1 s resolution


@dataclass
class ReconcileReport:
    emitted: list[str] = field(default_factory=list)  # commit ids, in publish order
    skipped: list[str] = field(default_factory=list)  # lakeloop's own commits, recorded as skipped
    already: int = 0  # settled before this pass (or taken by the bridge meanwhile)
    unattributed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Candidate:
    commit: CommitInfo
    branch: str
    position: int  # along the branch's first-parent chain, oldest = 0


def _first_parent_chain(head: str, by_id: dict[str, CommitInfo]) -> list[CommitInfo]:
    chain: list[CommitInfo] = []
    seen: set[str] = set()
    cur: str | None = head
    while cur and cur in by_id and cur not in seen:
        seen.add(cur)
        c = by_id[cur]
        chain.append(c)
        cur = c.parents[0] if c.parents else None
    chain.reverse()
    return chain


def missing_commits(lake: Lake, ledger: Ledger, branches: Sequence[str] | None = None,
                    log_limit: int = 1000, policy: BranchPolicy | None = None) -> tuple[list[_Candidate], list[str]]:
    """Unsettled commits newer than the baseline, in commit order, plus unattributed ids.

    `branches` None: every branch `policy` relays (default policy: the default branch only)."""
    repo = lake.settings.repository
    baseline = ledger.baseline(f"lakefs:{repo}") - BASELINE_SLACK
    prefix = f"lakefs:{repo}:"
    settled = {k[len(prefix):] for k in ledger.settled_keys(prefix)}
    policy = policy or BranchPolicy(watched=(lake.settings.default_branch,))
    names = list(branches) if branches is not None else [b for b in lake.branches() if policy.relayed(b)]
    # watched branches first, so a commit on several first-parent chains (a merged experiment) is theirs
    default = lake.settings.default_branch
    names.sort(key=lambda b: (policy.role(b) != "watched", b != default, b))
    chosen: dict[str, _Candidate] = {}
    reachable: dict[str, CommitInfo] = {}
    for b in names:
        history = lake.log(b, limit=log_limit)
        by_id = {c.id: c for c in history}
        reachable.update(by_id)
        if not history:
            continue
        for pos, c in enumerate(_first_parent_chain(history[0].id, by_id)):
            if c.id in settled or c.id in chosen or not c.parents or c.created < baseline:
                continue
            chosen[c.id] = _Candidate(c, b, pos)
    unattributed = sorted(cid for cid, c in reachable.items()
                          if cid not in chosen and cid not in settled and c.parents and c.created >= baseline)
    # Oldest first. lakeFS times have 1 s resolution, so ties are broken by generation
    # (an ancestor always sorts before its descendants), then default branch, then chain order.
    gen = _generations(reachable)
    ordered = sorted(chosen.values(),
                     key=lambda k: (k.commit.created, gen[k.commit.id], k.branch != default, k.position))
    return ordered, unattributed


def _generations(by_id: dict[str, CommitInfo]) -> dict[str, int]:
    """Longest distance from a root (or from the edge of the fetched log), like lakeFS's generation."""
    gen: dict[str, int] = {}
    for start in by_id:
        stack = [start]
        while stack:
            cid = stack[-1]
            if cid in gen:
                stack.pop()
                continue
            pending = [p for p in by_id[cid].parents if p in by_id and p not in gen]
            if pending:
                stack.extend(pending)
                continue
            gen[cid] = 1 + max((gen[p] for p in by_id[cid].parents if p in by_id), default=0)
            stack.pop()
    return gen


def reconcile_once(lake: Lake, ledger: Ledger, emitter: Emitter, *, branches: Sequence[str] | None = None,
                   owner: str = "reconcile", log_limit: int = 1000,
                   policy: BranchPolicy | None = None) -> ReconcileReport:
    """One pass over `lake`'s repository; stops at the first publish error (order matters)."""
    repo = lake.settings.repository
    report = ReconcileReport()
    candidates, report.unattributed = missing_commits(lake, ledger, branches, log_limit, policy)
    for uid in report.unattributed:
        log.warning("lakefs://%s commit %s is on no branch's first-parent chain; not replayed", repo, uid)
    for cand in candidates:
        c = cand.commit
        key = commit_key(repo, c.id)
        if is_internal_commit(c.metadata):
            if ledger.skip(key, "lakefs", owner, "lakeloop actions commit"):
                report.skipped.append(c.id)
            continue
        payload = CommitPayload(
            repository=repo, branch=cand.branch, commit_id=c.id, message=c.message, committer=c.committer,
            metadata=c.metadata, merge_source=None,
            lakefs_event="post-merge" if len(c.parents) > 1 else "post-commit",
            event_time=c.created, delivered_by="reconcile",
        )
        event = commit_event(payload)
        try:
            if ledger.run_once(key, "lakefs", owner, functools.partial(emitter, event), {"event": event.event}):
                report.emitted.append(c.id)
            else:
                report.already += 1
        except Exception as e:
            report.errors.append(f"{c.id}: {type(e).__name__}: {e}")
            log.warning("reconcile stopped at lakefs://%s commit %s: %s", repo, c.id, e)
            break
    return report


def run_periodically(make_lake: Callable[[], Sequence[Lake]], ledger: Ledger, emitter: Emitter,
                     interval: float, stop: threading.Event,
                     on_report: Callable[[str, ReconcileReport], None] | None = None,
                     owner: str = "reconcile", policy: BranchPolicy | None = None,
                     jobs: Sequence[Callable[[], object]] = (), retry_after: float = 5.0) -> None:
    """Reconcile now, then every `interval` seconds until `stop` is set (errors are logged, not fatal).

    A pass that could not deliver everything (Prefect slow or down, lakeFS unreachable) is retried
    after `retry_after` seconds, doubling up to `interval`, so missed commits do not wait a whole
    interval behind one timeout. `jobs` run at the start of every pass, each on its own (one failing
    does not skip the others or the reconcile): the bridge replays the flows' event outbox this way."""
    backoff = retry_after
    absent: set[str] = set()  # repositories reported missing (said once, not every retry)
    while not stop.is_set():
        for job in jobs:
            try:
                job()
            except Exception:
                log.exception("periodic job %s failed", getattr(job, "__name__", job))
        failed = False
        try:
            for lake in make_lake():
                if not lake.repository_exists():  # expected before `lakeloop up` creates it: look again soon
                    if lake.settings.repository not in absent:
                        log.info("lakefs://%s does not exist yet; reconciling it once it does",
                                 lake.settings.repository)
                    absent.add(lake.settings.repository)
                    failed = True
                    continue
                absent.discard(lake.settings.repository)
                rep = reconcile_once(lake, ledger, emitter, owner=owner, policy=policy)
                failed = failed or bool(rep.errors)
                if rep.emitted or rep.errors:
                    log.info("reconcile %s: emitted %d, errors %s", lake.settings.repository,
                             len(rep.emitted), rep.errors)
                if on_report is not None:
                    on_report(lake.settings.repository, rep)
        except Exception:
            failed = True
            log.exception("reconcile pass failed")
        if failed:
            log.info("reconcile retries in %.0fs", min(backoff, interval))
            stop.wait(min(backoff, interval))
            backoff = min(backoff * 2, interval)
        else:
            backoff = retry_after
            stop.wait(interval)
