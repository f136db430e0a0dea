"""Which code trained a model: the checkout's git sha, else the installed package's version."""

from __future__ import annotations

import subprocess
from functools import lru_cache

from lakeloop.settings import IN_CHECKOUT, ROOT


@lru_cache(maxsize=1)
def code_version() -> str:
    """git sha of the checkout (with `+dirty` when modified), else the installed package version.

    Installed, ROOT is site-packages: git there would answer for whatever repository holds the venv."""
    if IN_CHECKOUT:
        try:
            sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                 timeout=5, check=True).stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            if sha:
                return sha + ("+dirty" if dirty else "")
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        from importlib.metadata import version

        return "lakeloop-" + version("lakeloop")
    except Exception:
        return "unknown"
