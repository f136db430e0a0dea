"""The README's settings tables say what the code does: every default written beside a LAKELOOP_ variable
is the default of the settings field that reads it (the README once said 0.05 where the code said 0.01)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from pydantic_settings import BaseSettings

from lakeloop import settings as settings_module

README = Path(__file__).resolve().parents[1] / "README.md"


def _defaults() -> dict[str, object]:
    out: dict[str, object] = {}
    for _, cls in inspect.getmembers(settings_module, inspect.isclass):
        if not issubclass(cls, BaseSettings) or cls is BaseSettings:
            continue
        prefix = str(cls.model_config.get("env_prefix", "")).upper()
        for name, field in cls.model_fields.items():
            if field.default_factory is None:
                out[f"{prefix}{name.upper()}"] = field.default
    return out


def _same(written: str, default: object) -> bool:
    if isinstance(default, Path):  # written relative to the checkout
        return str(default).endswith(written.rstrip("/"))
    if isinstance(default, bool):
        return written.lower() == str(default).lower()
    if isinstance(default, int | float):
        try:
            return float(written) == float(default)
        except ValueError:
            return False
    return written == str(default)


def readme_rows() -> list[tuple[str, str]]:
    """(variable, written default) for every table row that pairs LAKELOOP_ variables with literal defaults."""
    pairs: list[tuple[str, str]] = []
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or "LAKELOOP_" not in cells[0]:
            continue
        names = re.findall(r"`(LAKELOOP_[A-Z0-9_]+)`", cells[0])
        written = re.findall(r"`([^`]*)`", cells[1])
        if names and len(names) == len(written):
            pairs += list(zip(names, written, strict=True))
    return pairs


def test_every_default_in_the_readme_is_the_codes_default() -> None:
    defaults = _defaults()
    rows = [(n, w) for n, w in readme_rows() if n in defaults]
    assert len(rows) >= 15, "the README's settings tables were not found"
    wrong = [f"{n}: README {w!r}, code {defaults[n]!r}" for n, w in rows if not _same(w, defaults[n])]
    assert not wrong, wrong


def test_the_check_catches_a_wrong_default() -> None:
    defaults = _defaults()
    assert not _same("0.05", defaults["LAKELOOP_DRIFT_DRIFT_PVALUE"])
    assert "LAKELOOP_MONITOR_FALSE_ALARM_RATE" in dict(readme_rows())
