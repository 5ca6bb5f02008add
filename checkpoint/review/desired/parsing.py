"""Reading a desired-state file (``registry.yaml``) or its JSON form into typed wants.

The file is read with PyYAML's ``compose`` so every value keeps its line: an error names the
file, the line and the key path (``registry.yaml:4: models.fraud-detector.aliases.champion:
expected a version number, got "seven"``). The JSON form (what the CLI sends to the plan route)
is checked by the same walker, with no lines. Nothing here talks to MLflow.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import yaml
import yaml.constructor

from checkpoint.errors import CheckpointError
from checkpoint.review.changes.parsing import ChangeError, canonical_workspace, parse_models_uri

# The stages a file may declare: Archived and None hold every retired version, so "which version
# holds them" has no single answer to declare.
DECLARED_STAGES = ("Staging", "Production")
MODEL_KEYS = ("aliases", "stages", "copy_of", "workspace")
TOP_KEYS = ("models", "workspace")
MAX_MODELS = 500  # one plan reads MLflow for each target: a bound on the work one call asks for


class DesiredError(CheckpointError):
    """A desired-state file Checkpoint cannot read; ``problems`` lists each (line, key, message)."""

    def __init__(self, problems: list[Problem], filename: str = "") -> None:
        self.problems = problems
        self.filename = filename
        lines = [p.render(filename) for p in problems]
        super().__init__(400, "INVALID_PARAMETER_VALUE", "\n".join(lines), problems=[p.to_json() for p in problems])


@dataclass(frozen=True)
class Problem:
    key: str
    message: str
    line: int | None = None

    def render(self, filename: str = "") -> str:
        where = f"{filename or '<input>'}:{self.line}: " if self.line is not None else ""
        return f"{where}{self.key}: {self.message}" if self.key else f"{where}{self.message}"

    def to_json(self) -> dict:
        return {"key": self.key, "line": self.line, "message": self.message}


@dataclass(frozen=True)
class Want:
    """One target and what should hold it.

    ``kind`` is ``alias`` (``name`` the alias; ``version`` None = the alias must not exist),
    ``stage`` (``name`` the stage; ``version`` None = no version in it) or ``copy`` (the newest
    version of ``model`` has the content of ``source``, a ``models:`` URI).
    """

    model: str
    workspace: str
    kind: str
    name: str = ""
    version: str | None = None
    source: str = ""
    key: str = ""
    line: int | None = None

    def to_json(self) -> dict:
        out: dict = {"model": self.model, "kind": self.kind, "key": self.key}
        if self.workspace:
            out["workspace"] = self.workspace
        if self.kind == "copy":
            out["source"] = self.source
        else:
            out["name"], out["version"] = self.name, self.version
        return out


@dataclass(frozen=True)
class DesiredState:
    wants: tuple[Want, ...] = ()
    filename: str = ""

    def document(self) -> dict:
        """The wants as the file's JSON form, spelled canonically (what the CLI sends to the
        plan route; ``from_json`` of it gives the same wants)."""
        models: dict[str, dict] = {}
        for w in self.wants:
            entry = models.setdefault(w.model, {"workspace": w.workspace or "default"})
            if w.kind == "copy":
                entry["copy_of"] = w.source
            else:
                entry.setdefault("aliases" if w.kind == "alias" else "stages", {})[w.name] = w.version
        return {"models": models}

    def lines(self) -> dict[tuple[str, str, str], int]:
        """(model, kind, name) of each want → its line in the file, for messages about it."""
        return {(w.model, w.kind, w.name): w.line for w in self.wants if w.line is not None}


# -- a tree with lines -------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    """A value of the document with its line (1-based; None for JSON input) and key path."""

    value: object  # a scalar, list[_Node], or list[tuple[_Node, _Node]] for a mapping
    line: int | None
    path: str
    kind: str  # "map", "list", "scalar", "null"
    raw: str = ""  # a YAML scalar as written (for messages)


def _from_yaml(node: yaml.Node, path: str, seen: set[int]) -> _Node:
    """The composed node as a _Node tree; an anchor used twice (``*alias``) is refused, so a
    small file cannot expand into a huge one."""
    line = node.start_mark.line + 1
    if id(node) in seen:
        raise DesiredError([Problem(path, "YAML aliases (*name) are not supported here: write the value out", line)])
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        pairs = []
        for key, value in node.value:
            key_text = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
            pairs.append((_from_yaml(key, path, seen), _from_yaml(value, _join(path, key_text), seen)))
        return _Node(pairs, line, path, "map")
    if isinstance(node, yaml.SequenceNode):
        return _Node([_from_yaml(n, f"{path}[{i}]", seen) for i, n in enumerate(node.value)], line, path, "list")
    assert isinstance(node, yaml.ScalarNode)
    # The value as the safe loader reads it (7 an int, "7" a string, null None, yes True).
    value = yaml.constructor.SafeConstructor().construct_object(node)
    return _Node(value, line, path, "null" if value is None else "scalar", raw=str(node.value))


def _from_json(value: object, path: str) -> _Node:
    if isinstance(value, dict):
        pairs = [(_Node(k, None, path, "scalar", raw=str(k)), _from_json(v, _join(path, str(k)))) for k, v in value.items()]
        return _Node(pairs, None, path, "map")
    if isinstance(value, list):
        return _Node([_from_json(v, f"{path}[{i}]") for i, v in enumerate(value)], None, path, "list")
    return _Node(value, None, path, "null" if value is None else "scalar", raw=str(value))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# -- the walker --------------------------------------------------------------------------


class _Reader:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def fail(self, node: _Node, message: str, key: str | None = None) -> None:
        self.problems.append(Problem(node.path if key is None else key, message, node.line))

    def mapping(self, node: _Node, allowed: tuple[str, ...] | None = None) -> Iterator[tuple[str, _Node]]:
        """The pairs of a mapping, each key a string once; a wrong shape or key is a problem."""
        if node.kind != "map":
            self.fail(node, f"expected a mapping, got {_shown(node)}")
            return
        seen: set[str] = set()
        assert isinstance(node.value, list)
        for key, value in node.value:
            if not isinstance(key.value, str) or not key.value:
                self.fail(key, f"keys must be names, got {_shown(key)}", key=_join(node.path, key.raw))
                continue
            if key.value in seen:
                self.fail(key, "duplicate key (each target is declared once)", key=value.path)
                continue
            seen.add(key.value)
            if allowed is not None and key.value not in allowed:
                self.fail(key, f"unknown key (expected one of {', '.join(allowed)})", key=value.path)
                continue
            yield key.value, value

    def version(self, node: _Node) -> str | None | _Bad:
        """A version number (``7`` or ``"7"``), or None for ``null`` (the target must be empty)."""
        if node.kind == "null":
            return None
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isascii():
            self.fail(node, f"expected a version number or null, got {_shown(node)}")
            return BAD
        text = str(value).strip()
        if not text.isdigit() or int(text) < 1:
            self.fail(node, f"expected a version number or null, got {_shown(node)}")
            return BAD
        return str(int(text))

    def workspace(self, node: _Node) -> str:
        if not isinstance(node.value, str):
            self.fail(node, f"expected a workspace name, got {_shown(node)}")
            return ""
        try:
            return canonical_workspace(node.value)
        except ChangeError as exc:
            self.fail(node, str(exc).replace(" (X-MLFLOW-WORKSPACE)", "").replace("; send one workspace only", ""))
            return ""


class _Bad:
    """A value already reported as a problem."""


BAD = _Bad()


def _shown(node: _Node) -> str:
    if node.kind == "map":
        return "a mapping"
    if node.kind == "list":
        return "a list"
    if node.kind == "null":
        return "null"
    text = node.raw if len(node.raw) <= 60 else node.raw[:57] + "..."
    return f'"{text}"'


def copy_source(text: str) -> str:
    """``fraud-detector@champion``, ``fraud-detector/7``, ``fraud-detector/Production`` or
    ``fraud-detector/latest`` (with or without ``models:/``) as the ``models:`` URI a copy
    sends; a ChangeError for anything else."""
    uri = text if text.lower().startswith("models:") else f"models:/{text}"
    try:
        ref = parse_models_uri(uri)
    except ChangeError:
        ref = None
    if ref is None or ref.name is None:
        raise ChangeError(f'expected NAME@ALIAS, NAME/VERSION, NAME/STAGE or NAME/latest, got "{text[:60]}"')
    return uri


def _model(reader: _Reader, name: str, node: _Node, default_workspace: str) -> list[Want]:
    parts = dict(reader.mapping(node, MODEL_KEYS))
    workspace = reader.workspace(parts["workspace"]) if "workspace" in parts else default_workspace
    wants: list[Want] = []
    for alias, value in reader.mapping(parts["aliases"]) if "aliases" in parts else ():
        version = reader.version(value)
        if not isinstance(version, _Bad):
            wants.append(Want(name, workspace, "alias", alias, version, key=value.path, line=value.line))
    for stage_key, value in reader.mapping(parts["stages"]) if "stages" in parts else ():
        stage = next((s for s in DECLARED_STAGES if s.lower() == stage_key.strip().lower()), None)
        if stage is None:
            reader.fail(value, f"unknown stage (expected one of {', '.join(DECLARED_STAGES)})")
            continue
        if any(w.kind == "stage" and w.name == stage for w in wants):
            reader.fail(value, f"stage {stage} is declared twice")
            continue
        version = reader.version(value)
        if not isinstance(version, _Bad):
            wants.append(Want(name, workspace, "stage", stage, version, key=value.path, line=value.line))
    if "copy_of" in parts:
        value = parts["copy_of"]
        if not isinstance(value.value, str) or value.kind != "scalar":
            reader.fail(value, f"expected a model reference such as fraud-detector@champion, got {_shown(value)}")
        else:
            try:
                source = copy_source(value.value.strip())
            except ChangeError as exc:
                reader.fail(value, str(exc))
            else:
                wants.append(Want(name, workspace, "copy", source=source, key=value.path, line=value.line))
    if not parts.keys() - {"workspace"} and node.kind == "map":
        reader.fail(node, "declares nothing (give aliases, stages or copy_of)")
    return wants


def _document(root: _Node, filename: str) -> list[Want]:
    reader = _Reader()
    top = dict(reader.mapping(root, TOP_KEYS))
    if not reader.problems and "models" not in top:
        reader.fail(root, "the file declares no models (a top-level 'models:' mapping)", key="models")
    workspace = reader.workspace(top["workspace"]) if "workspace" in top else ""
    wants: list[Want] = []
    models = list(reader.mapping(top["models"])) if "models" in top else []
    if len(models) > MAX_MODELS:
        reader.fail(top["models"], f"at most {MAX_MODELS} models per file")
    for name, node in models[:MAX_MODELS]:
        wants.extend(_model(reader, name, node, workspace))
    if reader.problems:
        raise DesiredError(reader.problems, filename)
    return wants


def load(text: str, filename: str = "registry.yaml") -> DesiredState:
    """The wants a YAML file declares, or a DesiredError naming each problem's line and key."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        raise DesiredError([Problem("", f"not valid YAML: {reason}", mark.line + 1 if mark else None)], filename) from exc
    if root is None:
        raise DesiredError([Problem("", "the file is empty (expected a top-level 'models:' mapping)", 1)], filename)
    try:
        tree = _from_yaml(root, "", set())
    except DesiredError as exc:
        raise DesiredError(exc.problems, filename) from None
    return DesiredState(tuple(_document(tree, filename)), filename)


def from_json(data: object) -> DesiredState:
    """The wants a JSON document (the file's shape) declares, or a DesiredError naming each key."""
    return DesiredState(tuple(_document(_from_json(data, ""), "")))
