"""`python -m infra.bridge --host 127.0.0.1 --port 8765`: serve the bridge (and reconcile in the background).

Every reconcile pass also replays the flows' event outbox (`lakeloop.event_outbox`, under the
shared state directory), so an event whose flow died after a failed emit is still delivered, and
confirms that each commit event Prefect accepted started its on-commit run (`infra.bridge.run_confirm`:
Prefect's event bus is in memory, so a restart can drop accepted events)."""

from __future__ import annotations

import argparse
import logging
import os
import threading

import httpx
import uvicorn

from infra.bridge.app import create_app
from infra.bridge.reconcile import run_periodically
from infra.bridge.run_confirm import (
    DEFAULT_GRACE_S,
    PrefectRuns,
    SentCommitEvents,
    confirm_once,
    recording,
    recording_batches,
)
from infra.bridge.service import build_config
from lakeloop.adapters.prefect_events import replay_outbox
from lakeloop.branches import BranchPolicy
from lakeloop.event_outbox import EventOutbox
from lakeloop.settings import check_secrets, get_settings


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m infra.bridge", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--reconcile-interval", type=float, default=180.0,
                    help="seconds between reconcile passes (0: no reconciler in this process)")
    ap.add_argument("--repository", action="append", default=None,
                    help="lakeFS repositories to reconcile (default: LAKEFS_REPOSITORY)")
    ap.add_argument("--no-gate", action="store_true", help="answer pre-merge hooks without checking data")
    ap.add_argument("--confirm-grace", type=float,
                    default=float(os.environ.get("LAKELOOP_BRIDGE_CONFIRM_GRACE_S", DEFAULT_GRACE_S)),
                    help="seconds after publishing a commit event before its missing on-commit run is acted on")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    settings = get_settings()
    check_secrets(settings, bind_hosts=(args.host,))
    config = build_config(settings, gate=not args.no_gate)
    publish = config.emitter
    sent_commits = SentCommitEvents.at(settings.state_dir)
    config.emitter = recording(publish, sent_commits)  # commit events Prefect accepted, to confirm their runs
    if config.publish is not None:
        config.publish = recording_batches(config.publish, sent_commits)
    stop = threading.Event()
    if args.reconcile_interval > 0:
        from lakeloop.adapters.lakefs import Lake

        repos = args.repository or [settings.lakefs.repository]

        def lakes() -> list[Lake]:
            return [Lake(settings.lakefs.model_copy(update={"repository": r})) for r in repos]

        def replay_event_outbox() -> None:
            replay_outbox(settings.state_dir, settings.prefect.api_url)
            EventOutbox.at(settings.state_dir).prune()  # sent more than a week ago
            sent_commits.prune()

        runs = PrefectRuns(settings.prefect.api_url)

        def confirm_commit_runs() -> None:
            try:
                rep = confirm_once(sent_commits, runs, publish, grace_s=args.confirm_grace)
            except httpx.HTTPError as e:  # Prefect down or restarting: the next pass confirms
                logging.getLogger("infra.bridge.run_confirm").warning("run confirmation skipped: %s", e)
                return
            if rep.redelivered or rep.rescheduled or rep.abandoned:
                logging.getLogger("infra.bridge.run_confirm").info(
                    "run confirmation: %d confirmed, %d re-delivered, %d rescheduled, %d given up",
                    len(rep.confirmed), len(rep.redelivered), len(rep.rescheduled), len(rep.abandoned))

        reconciler = threading.Thread(
            target=run_periodically,
            args=(lakes, config.ledger, config.emitter, args.reconcile_interval, stop),
            kwargs={"owner": "reconcile", "policy": BranchPolicy.from_settings(settings),
                    "jobs": [replay_event_outbox, confirm_commit_runs]},
            name="reconcile", daemon=True,
        )
        reconciler.start()
    try:
        uvicorn.run(create_app(config), host=args.host, port=args.port, log_level="warning")
    finally:
        stop.set()


if __name__ == "__main__":
    main()
