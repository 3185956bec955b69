"""The whole tree passes the project's pinned lint rules (pyproject.toml,
[tool.ruff.lint]): an unused import, an undefined name or imports out of
order fail the suite, not only a reviewer's eye."""

import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[1]


def test_the_tree_passes_ruff_with_the_pinned_rules():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=BASE_DIR,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
