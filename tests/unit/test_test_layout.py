"""The tests' own layout (issue #13): shared helpers live in tests/support/, so no test module
imports another test module (a helper there would be collected, run and edited as a test)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def imports_of(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def test_no_test_module_imports_another():
    offending = [
        f"{path.relative_to(TESTS.parent)}:{line} imports {module}"
        for path in sorted(TESTS.rglob("*.py"))
        for line, module in imports_of(path)
        if module.startswith(("tests.unit", "tests.integration", "tests.conftest"))
    ]
    assert offending == []


def test_the_walk_sees_an_offending_import(tmp_path):
    module = tmp_path / "test_x.py"
    module.write_text("from tests.integration.test_api import helper\nimport tests.unit.test_cli\n")
    assert [m for _, m in imports_of(module)] == ["tests.integration.test_api", "tests.unit.test_cli"]
