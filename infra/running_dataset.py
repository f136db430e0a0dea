"""Which dataset the local stack serves, so a command in a new shell answers about it.

`lakeloop demo --data X --spec Y` starts the stack for Y, but `lakeloop lineage` or `history` typed later in
another shell has no LAKELOOP_SPEC_PATH and would fall back to the worked example's names. The stack records
its spec beside its pid file; commands read it unless the environment names a spec, which always wins."""

from __future__ import annotations

import json
import os
from pathlib import Path

from lakeloop.settings import Settings, get_settings

DATASET_FILE = "dataset.json"


def remember(s: Settings) -> None:
    path = s.home / DATASET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"spec_path": str(Path(s.spec_path).resolve())}))


def forget(s: Settings) -> None:
    (s.home / DATASET_FILE).unlink(missing_ok=True)


def command_settings() -> Settings:
    """The settings a CLI command runs with: the environment's, for the running stack's dataset."""
    s = get_settings()
    if os.environ.get("LAKELOOP_SPEC_PATH"):
        return s
    try:
        spec = Path(json.loads((s.home / DATASET_FILE).read_text())["spec_path"])
    except (OSError, ValueError, KeyError, TypeError):
        return s
    return s.for_spec(spec) if spec.exists() else s
