"""schemathesis against lakeloop's two HTTP services, with a bigger budget than CI's.

The local lakeFS server is fuzzed against lakeFS's official OpenAPI spec (the operations it serves),
the bridge against its own document (`GET /openapi.json`), as tests/test_fuzz_integration.py does:
a seeded repository is the target of most cases, one case in five carries hostile credentials, and
after both runs every commit and object written before them must read back byte for byte.
Figures: `fuzz.lakefs_cases` and `fuzz.bridge_cases` (cases run; `*_failures` must be 0).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from bench.results_io import record
from infra.procs import free_port
from tests.fixtures.lakefs import LakeFSServer
from tests.fuzz_targets import bridge_under_fuzz, fuzz_bridge, fuzz_lakefs, lakefs_http, seed_repository

LAKEFS_EXAMPLES = 10  # per operation: 44 operations
BRIDGE_EXAMPLES = 60  # per operation: 4 operations


def main() -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="lakeloop-bench-fuzz-"))
    server = LakeFSServer(port=free_port(), home=home / "lakefs")
    server.start()
    try:
        snap = seed_repository(server)
        lakefs_report = fuzz_lakefs(server, snap, LAKEFS_EXAMPLES)
        with bridge_under_fuzz(server, snap, home / "bridge") as (url, events):
            bridge_report = fuzz_bridge(url, snap, BRIDGE_EXAMPLES)
        with lakefs_http(server) as http:
            changed = snap.changed(http)
            alive = http.get("/api/v1/healthcheck").status_code == 204
    finally:
        server.stop()
    figures: dict[str, Any] = {
        "lakefs_cases": lakefs_report.cases, "lakefs_failures": len(lakefs_report.failures),
        "bridge_cases": bridge_report.cases, "bridge_failures": len(bridge_report.failures),
        "lakefs": lakefs_report.figures(), "bridge": {**bridge_report.figures(), "events_emitted": len(events)},
        "seeded_reads_changed": len(changed), "seeded_reads": len(snap.answers), "lakefs_alive_after": alive,
        "budget": {"lakefs_examples_per_operation": LAKEFS_EXAMPLES, "bridge_examples_per_operation": BRIDGE_EXAMPLES},
        "load_avg_1m": round(os.getloadavg()[0], 2), "cores": os.cpu_count(),
    }
    print(lakefs_report.summary())
    print(bridge_report.summary())
    print(f"seeded reads changed: {len(changed)} of {len(snap.answers)}; lakeFS alive after: {alive}")
    record("fuzz", figures)
    return figures


if __name__ == "__main__":
    main()
