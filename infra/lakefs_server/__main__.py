"""`python -m infra.lakefs_server --host --port --data-dir [--access-key-id --secret-access-key]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from infra.lakefs_server.serve import serve


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m infra.lakefs_server", description="local lakeFS-compatible server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--data-dir", type=Path, default=Path(".lakeloop/lakefs"))
    ap.add_argument("--access-key-id", default=None, help="default: $LAKEFS_ACCESS_KEY_ID, else generated")
    ap.add_argument("--secret-access-key", default=None, help="default: $LAKEFS_SECRET_ACCESS_KEY, else generated")
    a = ap.parse_args(argv)
    serve(a.host, a.port, a.data_dir, a.access_key_id, a.secret_access_key)


if __name__ == "__main__":
    main()
