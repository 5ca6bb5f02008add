"""The layering rules (issue #13; docs/architecture.md, "Import rules"), enforced: an `ast` walk over
every module of the package (imports at the top and inside functions alike, relative ones
resolved), so a layer that reaches the wrong way fails here with the module, line and import."""

from __future__ import annotations

import ast
import functools
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import checkpoint

PACKAGE = Path(checkpoint.__file__).resolve().parent


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    line: int
    target: str  # the imported module (or module.name for `from m import name`), dotted
    source: str  # the statement as written
    lazy: bool = False  # inside a function: runs only when that function is called


# (layer, layers it must never import, modules exempt from the rule, why)
CONTRACTS: list[tuple[str, tuple[str, ...], tuple[str, ...], str]] = [
    ("checkpoint.edge", ("checkpoint.storage", "checkpoint.web"), (), "the WSGI front door has no SQL and no Flask views"),
    (
        "checkpoint.storage",
        ("checkpoint.review", "checkpoint.events", "checkpoint.web"),
        (),
        "persistence sits below the domain",
    ),
    ("checkpoint.review", ("checkpoint.web", "checkpoint.edge"), (), "the domain knows nothing of HTTP"),
    (
        "checkpoint",
        ("checkpoint.demo",),
        ("checkpoint.demo", "checkpoint.cli"),
        "the demo is not part of the product (cli's `demo` command imports it lazily)",
    ),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of a relative import `from <level dots><name> import ...`."""
    if level == 0:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, name] if name else base)


class _Walker(ast.NodeVisitor):
    """Every import statement, noting whether it sits inside a function."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.module, self.is_package, self.depth = module, is_package, 0
        self.found: list[Import] = []

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        self.found += [self._import(node, alias.name) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        target = resolve(self.module, self.is_package, node.level, node.module)
        # `from checkpoint import demo` imports the module checkpoint.demo: count each name too.
        self.found += [self._import(node, target), *(self._import(node, f"{target}.{a.name}") for a in node.names)]

    def _import(self, node: ast.Import | ast.ImportFrom, target: str) -> Import:
        return Import(self.module, node.lineno, target, ast.unparse(node), lazy=self.depth > 0)


def imports_of(path: Path) -> list[Import]:
    walker = _Walker(module_name(path), path.name == "__init__.py")
    walker.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return walker.found


@functools.cache
def all_imports() -> list[Import]:
    return [imp for path in sorted(PACKAGE.rglob("*.py")) for imp in imports_of(path)]


def within(name: str, layer: str) -> bool:
    return name == layer or name.startswith(layer + ".")


@dataclass(frozen=True)
class Break:
    imp: Import
    banned: str
    why: str

    def __str__(self) -> str:
        return f"{self.imp.module} line {self.imp.line}: `{self.imp.source}` imports {self.banned} ({self.why})"


def breaks(imports: list[Import], contract: tuple[str, tuple[str, ...], tuple[str, ...], str]) -> list[Break]:
    """Every import in ``imports`` that the contract forbids, one per statement."""
    layer, forbidden, exempt, why = contract
    found: dict[tuple[str, int, str], Break] = {}
    for imp in imports:
        if not within(imp.module, layer) or any(within(imp.module, e) for e in exempt):
            continue
        banned = next((b for b in forbidden if within(imp.target, b)), None)
        if banned is not None:
            found.setdefault((imp.module, imp.line, banned), Break(imp, banned, why))
    return list(found.values())


def violations(imports: list[Import]) -> list[str]:
    return sorted(str(b) for contract in CONTRACTS for b in breaks(imports, contract))


def test_the_walk_sees_the_whole_package():
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    assert len(modules) > 40
    imports = all_imports()
    assert {"checkpoint.edge.gateway", "checkpoint.storage.db", "checkpoint.review.workflow"} <= modules
    # Function-level imports count: cli's lazy import of the demo is among those seen.
    assert any(i.module == "checkpoint.cli" and within(i.target, "checkpoint.demo") for i in imports)


@pytest.mark.parametrize("contract", CONTRACTS, ids=[c[0] for c in CONTRACTS])
def test_layer_imports_nothing_above_it(contract):
    """No exceptions: the last tolerated break (serving's start-up migration) went to cli.py."""
    found = breaks(all_imports(), contract)
    assert not found, "import rule broken:\n" + "\n".join(map(str, found))


def test_the_cli_imports_the_demo_only_inside_its_command():
    """`checkpoint serve` and the rest never load the demo (nor its sklearn/pandas imports)."""
    eager = [i for i in all_imports() if i.module == "checkpoint.cli" and within(i.target, "checkpoint.demo") and not i.lazy]
    assert not eager, "\n".join(f"checkpoint.cli line {i.line}: `{i.source}` runs at import" for i in eager)


def test_imports_inside_functions_are_seen_as_lazy(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint" / "x.py"
    path.parent.mkdir()
    path.write_text("import os\n\nclass A:\n    def f(self):\n        from checkpoint import demo\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "checkpoint")
    assert [(i.target, i.lazy) for i in imports_of(path)] == [("os", False), ("checkpoint", True), ("checkpoint.demo", True)]


@pytest.mark.parametrize(
    ("module", "is_package", "level", "name", "expected"),
    [
        ("checkpoint.edge.gateway", False, 1, "proxy", "checkpoint.edge.proxy"),
        ("checkpoint.edge.gateway", False, 2, "storage", "checkpoint.storage"),
        ("checkpoint.edge.gateway", False, 1, None, "checkpoint.edge"),
        ("checkpoint.edge", True, 1, "rules", "checkpoint.edge.rules"),
        ("checkpoint.edge", True, 2, "web.api", "checkpoint.web.api"),
        ("checkpoint.cli", False, 0, "checkpoint.demo.run", "checkpoint.demo.run"),
    ],
)
def test_relative_imports_resolve(module, is_package, level, name, expected):
    assert resolve(module, is_package, level, name) == expected


@pytest.mark.parametrize(
    ("module", "source", "broken"),
    [
        ("checkpoint.edge.proxy", "from checkpoint.storage import db", True),
        ("checkpoint.edge.proxy", "from ..storage import db", True),
        ("checkpoint.edge.proxy", "def f():\n    from checkpoint.web.api import bp", True),
        ("checkpoint.edge.proxy", "import checkpoint.storage.store", True),
        ("checkpoint.storage.store", "from checkpoint.events import audit", True),
        ("checkpoint.review.policy", "from checkpoint import web", True),
        ("checkpoint.web.api", "from checkpoint import demo", True),
        ("checkpoint.cli", "def demo():\n    from checkpoint.demo.run import run", False),
        ("checkpoint.demo.run", "from checkpoint.demo.mlflow_server import MlflowServer", False),
        ("checkpoint.edge.proxy", "from checkpoint.review import changes", False),
        ("checkpoint.web.api", "from checkpoint.storage import db", False),
        ("checkpoint.edge.proxy", "from checkpoint.storagex import y", False),
    ],
)
def test_the_rules_catch_what_they_should(tmp_path, monkeypatch, module, source, broken):
    """The checker itself, on made-up modules: the contracts bite, and only where they should."""
    parts = module.split(".")
    path = tmp_path.joinpath(*parts).with_suffix(".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source + "\n", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "checkpoint")
    found = violations(imports_of(path))
    assert bool(found) is broken, found
    if broken:
        assert found[0].startswith(f"{module} line ") and "`" in found[0]
