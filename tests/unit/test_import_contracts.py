"""The import contracts in pyproject.toml hold, and each one fails when broken on purpose."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("evidence_agent", "review", "publish")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
    "importlinter"
]
NAMES = {c["id"]: c["name"] for c in CONFIG["contracts"]}


def copy_tree(dest: Path) -> Path:
    """The three packages and pyproject.toml, as lint-imports reads them from `dest`."""
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", dest)
    return dest


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    # lint-imports puts its working directory first on sys.path, so the copy is what it
    # analyses, not the installed packages; wide lines keep each contract's verdict on one.
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "300", "NO_COLOR": "1"},
    )


def verdicts(output: str) -> dict[str, str]:
    found = {}
    for contract_id, name in NAMES.items():
        for line in output.splitlines():
            if line.startswith(name + " ") and line.split()[-1] in ("KEPT", "BROKEN"):
                found[contract_id] = line.split()[-1]
    return found


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    result = lint_imports(copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert verdicts(result.stdout) == dict.fromkeys(NAMES, "KEPT")


@pytest.mark.parametrize(
    ("contract", "module", "code"),
    [
        ("pure-domain", "evidence_agent/domain/leak.py", "import sqlalchemy\n"),
        ("pure-domain", "evidence_agent/domain/leak.py", "import subprocess\n"),
        (
            "review-through-ports",
            "review/leak.py",
            "from evidence_agent.adapters.local_store import LocalObjectStore\n",
        ),
        ("review-through-ports", "publish/leak.py", "from evidence_agent.io import atomic\n"),
        ("core-below-review", "evidence_agent/adapters/leak.py", "import publish\n"),
        ("layers", "evidence_agent/custody/leak.py", "from evidence_agent.catalog import models\n"),
        ("layers", "evidence_agent/io/leak.py", "from evidence_agent.catalog import queries\n"),
        ("io-primitives", "evidence_agent/io/leak.py", "from evidence_agent import ports\n"),
        # review.cases imports review.lookup: the other way round closes a cycle.
        ("acyclic", "review/lookup.py", "from review import cases\n"),
    ],
)
def test_a_broken_contract_fails_by_name(
    tmp_path: Path, contract: str, module: str, code: str
) -> None:
    tree = copy_tree(tmp_path)
    with (tree / module).open("a", encoding="utf-8") as f:
        f.write(code)
    result = lint_imports(tree)
    assert result.returncode != 0, result.stdout
    assert verdicts(result.stdout)[contract] == "BROKEN", result.stdout


def test_the_layers_name_every_package() -> None:
    """A new package under evidence_agent must take its place in the layers contract."""
    [layers] = [c for c in CONFIG["contracts"] if c["type"] == "layers"]
    named = {m.strip() for layer in layers["layers"] for m in layer.split("|")}
    children = {
        f"evidence_agent.{p.stem}"
        for p in (ROOT / "evidence_agent").iterdir()
        if (p.suffix == ".py" or (p / "__init__.py").exists())
        and p.stem not in ("__init__", "__main__")
    }
    assert children <= named, sorted(children - named)
    assert {"review", "publish"} <= named
