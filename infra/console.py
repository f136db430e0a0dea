"""The one rich console of the `lakeloop` command and the demo's commands."""

from __future__ import annotations

import sys

from rich.console import Console

console = Console(width=None if sys.stdout.isatty() else 150)  # logs and CI get the full table
