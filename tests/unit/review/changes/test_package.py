"""The package keeps the one import path callers use, and its modules import one way: the kinds
and their helpers never import the dispatch (nor the package, which imports it), so no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from checkpoint.review import changes

# Every public name of the module the package was cut from; callers import them from the package.
PUBLIC = {
    "DEFAULT_WORKSPACE",
    "FIELDS",
    "KINDS",
    "PARSE_KINDS",
    "PROMPT_TAG",
    "Change",
    "ChangeError",
    "CreateModel",
    "CreateVersion",
    "DeleteAlias",
    "DeleteModel",
    "DeleteTag",
    "DeleteVersion",
    "ModelsRef",
    "Rename",
    "SetAlias",
    "SetTag",
    "Transition",
    "canonical_stage",
    "canonical_version",
    "canonical_workspace",
    "from_body",
    "from_json",
    "lone_surrogate",
    "parse",
    "parse_body",
    "parse_models_uri",
}


def test_the_package_exports_every_public_name():
    assert set(changes.__all__) == PUBLIC
    assert all(getattr(changes, name, None) is not None for name in PUBLIC)


def test_every_kind_is_a_change_in_the_table():
    assert all(issubclass(cls, changes.Change) and cls.kind == kind for kind, cls in changes.KINDS.items())


def _imported(path: Path) -> set[str]:
    """Every module (and ``module.name``) the file imports, relative imports resolved."""
    package = "checkpoint.review.changes".split(".")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found |= {module, *(f"{module}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


@pytest.mark.parametrize("module", ["base", "parsing", "pointers", "creations", "removals"])
def test_a_kind_module_never_imports_the_dispatch(module):
    imported = _imported(Path(changes.__file__).parent / f"{module}.py")
    banned = {"checkpoint.review.changes.dispatch", "checkpoint.review.changes"}
    assert not {name for name in imported if name in banned or name.startswith("checkpoint.review.changes.dispatch.")}
