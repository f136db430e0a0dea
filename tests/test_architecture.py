"""The import direction of pyproject.toml's import-linter contracts, checked on every test run.

Foundation (lakeloop) -> adapters (lakeloop.adapters) -> tasks -> flows -> application shell (infra),
stages inside tasks (data -> model -> labels -> serving), simulators for the demo only, and no cycle
between the siblings of any package. The second test proves the check can fail: on a copy of the
code it adds one back-import per contract and expects each contract to break.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lakeloop", "tasks", "flows", "infra")
CONTRACTS = {
    "foundation -> adapters -> tasks -> flows -> application shell": ("lakeloop/settings.py", "tasks.model.train"),
    "the foundation never reaches a service": ("lakeloop/spec.py", "lakeloop.adapters.lakefs"),
    "stages of the loop: serving -> labels -> model -> data": ("tasks/data/dataset.py", "tasks.labels.corrections"),
    "the simulators serve the demo only": ("tasks/model/train.py", "infra.demo.synth"),
    "no import cycles inside any package": ("infra/bridge/app.py", "infra.stack"),
    "the CLI reaches the demo through its commands only": ("infra/cli.py", "infra.demo.synth"),
}


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--no-cache", "--config", str(cwd / "pyproject.toml")], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_every_import_contract_is_kept() -> None:
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    for name in CONTRACTS:
        assert f"{name} KEPT" in run.stdout


def test_a_back_import_or_a_cycle_breaks_the_contracts(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for path, imported in CONTRACTS.values():
        target = tmp_path / path
        target.write_text(target.read_text() + f"\nimport {imported}  # deliberate back-import\n")
    run = lint_imports(tmp_path)
    assert run.returncode != 0
    for name, (path, imported) in CONTRACTS.items():
        assert f"{name} BROKEN" in run.stdout, f"{name}: not broken by {path} -> {imported}\n{run.stdout}"


def layout_rows() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("### Layout", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    return [f.strip("`/") for row in rows for f in row.split("|")[1].strip().split(", ")]


def test_the_readme_layout_table_matches_the_tree() -> None:
    listed = set(layout_rows())
    for folder in listed:
        assert (ROOT / folder).is_dir(), f"README layout names {folder}/, which does not exist"
    packages = {str(p.parent.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("__init__.py")}
    missing = {p for p in packages if p not in listed and p not in {"tasks"}}  # tasks/ is listed by stage
    assert not missing, f"packages missing from the README layout table: {sorted(missing)}"
