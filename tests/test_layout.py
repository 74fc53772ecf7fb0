"""The layout's rule: the libraries (clickpose, selection, storage) never import flows."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("clickpose", "selection", "storage")


def _imported_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_library_module_imports_flows_even_lazily():
    offenders = [str(path.relative_to(ROOT)) for library in LIBRARIES
                 for path in sorted((ROOT / library).rglob("*.py"))
                 if any(name == "flows" or name.startswith("flows.")
                        for name in _imported_names(path))]
    assert offenders == []


def test_importing_the_libraries_and_their_command_line_loads_no_flow():
    code = ("import sys, clickpose.cli.main, selection, storage; "
            "print(sorted(m for m in sys.modules if m == 'flows' or m.startswith('flows.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_console_script_offers_the_library_commands_and_the_demo():
    from flows.cli import app

    help_text = CliRunner().invoke(app, ["--help"]).output
    for command in ("train", "predict", "eval", "annotate", "synth", "check-data", "demo"):
        assert command in help_text
    demo_help = CliRunner().invoke(app, ["demo", "--help"]).output
    assert "--rounds" in demo_help and "--fresh" in demo_help
