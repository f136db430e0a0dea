"""`python -m infra.bridge --host 127.0.0.1 --port 8765`: serve the bridge (and reconcile in the background).

Every reconcile pass also replays the flows' event outbox (`lakeloop.event_outbox`, under the
shared state directory), so an event whose flow died after a failed emit is still delivered."""

from __future__ import annotations

import argparse
import logging
import threading

import uvicorn

from infra.bridge.app import create_app
from infra.bridge.service import build_config
from lakeloop.branches import BranchPolicy
from lakeloop.event_outbox import replay_outbox
from lakeloop.reconcile import run_periodically
from lakeloop.settings import get_settings


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m infra.bridge", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--reconcile-interval", type=float, default=180.0,
                    help="seconds between reconcile passes (0: no reconciler in this process)")
    ap.add_argument("--repository", action="append", default=None,
                    help="lakeFS repositories to reconcile (default: LAKEFS_REPOSITORY)")
    ap.add_argument("--no-gate", action="store_true", help="answer pre-merge hooks without checking data")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    settings = get_settings()
    config = build_config(settings, gate=not args.no_gate)
    stop = threading.Event()
    if args.reconcile_interval > 0:
        from tasks.lake import Lake

        repos = args.repository or [settings.lakefs.repository]

        def lakes() -> list[Lake]:
            return [Lake(settings.lakefs.model_copy(update={"repository": r})) for r in repos]

        def replay_event_outbox() -> None:
            replay_outbox(settings.state_dir, settings.prefect.api_url)

        reconciler = threading.Thread(
            target=run_periodically,
            args=(lakes, config.ledger, config.emitter, args.reconcile_interval, stop),
            kwargs={"owner": "reconcile", "policy": BranchPolicy.from_settings(settings),
                    "jobs": [replay_event_outbox]},
            name="reconcile", daemon=True,
        )
        reconciler.start()
    try:
        uvicorn.run(create_app(config), host=args.host, port=args.port, log_level="warning")
    finally:
        stop.set()


if __name__ == "__main__":
    main()
