"""One way for every bench to record its figures: merge a key into bench/results.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def record(key: str, figures: dict[str, Any]) -> Path:
    """Write `bench/out/<key>.json` and merge `{key: figures}` into `bench/results.json`.

    A dotted key nests, as the issues name figures: `events.burst_with_restart` is
    `{"events": {"burst_with_restart": ...}}`, beside what `events` already holds; recording
    `events` again keeps it."""
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / f"{key}.json").write_text(json.dumps(figures, indent=2, default=float))
    results = HERE / "results.json"
    data = json.loads(results.read_text()) if results.exists() else {}
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    old = node.get(leaf)
    # a bench owns its own keys; figures nested below it by another bench (events.burst_with_restart) stay
    node[leaf] = {**old, **figures} if isinstance(old, dict) else figures
    results.write_text(json.dumps(data, indent=2, sort_keys=True, default=float))
    return results
