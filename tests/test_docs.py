"""The README's commands are the ones CI runs, and the README's example runs as printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    section = ROOT.joinpath("README.md").read_text().split("\n## ")[1]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_readme_first_section_has_exactly_two_commands() -> None:
    """The set-up section gives two commands: run the quickstart, run the tests."""
    commands = _readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("examples/quickstart.py")
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run runs the README's test command word for word."""
    assert _readme_commands()[1] in ROOT.joinpath(".ci/run").read_text()


def test_readme_example_runs(tmp_path: Path) -> None:
    """The README's Python example runs as printed (in a scratch directory)."""
    readme = ROOT.joinpath("README.md").read_text()
    (code,) = re.findall(r"```python\n(.+?)\n```", readme, flags=re.S)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "assigned to you" in result.stdout


def test_docs_links_resolve() -> None:
    """Every relative link in the README and docs/ points at a file that exists."""
    pages = [ROOT / "README.md", *sorted(ROOT.joinpath("docs").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
