"""Any two versions, compared with the request page's diff (issue 17 §5), outside any request.

``b`` is compared against ``a`` as a request compares a challenger against the champion: ``a`` is
the version in place (``@champion``, ``Production``, a number), ``b`` the candidate, of the same
model or of another one (``b_model``). The diff is :func:`checkpoint.review.diff.compute_diff`
over the same loaded inputs, so the page and the API show what a request for ``b`` would show.

What a promote request "for this" would be follows from where ``a`` stands: ``b`` takes each
alias and stage ``a`` holds; across models, ``b`` is copied into ``a``'s model. Nothing here
opens a request: the new-request form does, after the author read the diff.

The behavioural diff (issue 14) of the same two versions is asked for beside :func:`compare`, by the
page (``web/compare.py``, ``BehaviourDiffs.for_versions``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from checkpoint.errors import CheckpointError
from checkpoint.registry import Registry, RegistryError, Version
from checkpoint.review import diff
from checkpoint.review.changes import (
    Change,
    ChangeError,
    CreateVersion,
    ModelsRef,
    SetAlias,
    Transition,
    canonical_stage,
    canonical_version,
)

REF_MAX = 256  # a version, alias or stage is short; longer is a mistake, not a name
# The stages a version can be said to hold; "None" is where every unpromoted version sits.
HELD_STAGES = ("Staging", "Production")
REF_HELP = "a version number (7), an alias (@champion), a stage (Production) or latest"


class CompareError(CheckpointError):
    """A reference that names no version: ``param`` says which field to fix (the page marks it)."""

    def __init__(self, status: int, param: str, message: str) -> None:
        code = "INVALID_PARAMETER_VALUE" if status == 400 else "RESOURCE_DOES_NOT_EXIST"
        super().__init__(status, code, message)
        self.param = param


def bad(param: str, message: str) -> CompareError:
    return CompareError(400, param, message)


def missing(param: str, message: str) -> CompareError:
    return CompareError(404, param, message)


def check_model_name(name: str, param: str) -> str:
    """A model name as asked (MLflow decides whether it exists); a 400 for one no model can have."""
    if not name.strip():
        raise bad(param, f"{param} is empty: name a registered model")
    if len(name) > REF_MAX * 2 or any(ord(ch) < 32 for ch in name):
        raise bad(param, f"{param} {name[:64]!r} is not a registered model's name")
    return name


def parse_ref(model: str, raw: str | None, param: str) -> ModelsRef:
    """``7``, ``@champion``, ``Production`` or ``latest`` — what a ``models:/`` URI may name after
    the model — as a reference to a version of ``model``; a 400 naming ``param`` otherwise."""
    text = (raw or "").strip()
    if not text:
        raise bad(param, f"{param} is missing: give {REF_HELP}")
    if len(text) > REF_MAX or any(ord(ch) < 32 for ch in text):
        raise bad(param, f"{param} {text[:64]!r} is not {REF_HELP}")
    if text.startswith("@"):
        if len(text) == 1:
            raise bad(param, f"{param} '@' names no alias: give {REF_HELP}")
        return ModelsRef(name=model, alias=text[1:])
    if text.lower() == "latest":
        return ModelsRef(name=model)
    if text.lstrip("+-").isdigit():
        try:
            version = canonical_version(text, param)
        except ChangeError as exc:
            raise bad(param, str(exc)) from exc
        if int(version) < 1:
            raise bad(param, f"{param} {text!r}: versions are numbered from 1")
        return ModelsRef(name=model, version=version)
    try:
        stage = canonical_stage(text)
    except ChangeError as exc:
        raise bad(param, f"{param} {text[:64]!r} is not {REF_HELP}") from exc
    if stage == "None":
        raise bad(param, f"{param} 'None' is where every unpromoted version sits: give one version")
    return ModelsRef(name=model, stage=stage)


def resolve(registry: Registry, ref: ModelsRef, param: str) -> Version:
    """The version ``ref`` names now; a 404 that says whether the model or the version is missing."""
    name = ref.name or ""
    try:
        if ref.version is not None:
            found: Version | None = registry.version(name, ref.version)
        elif ref.alias is not None:
            found = registry.alias_holder(name, ref.alias)
        else:
            if ref.stage is not None:
                newest = max(registry.stage_holders(name, ref.stage), key=lambda v: int(v.version), default=None)
            else:
                newest = registry.latest_version(name)
            # Read again: MLflow's version search leaves out aliases, which say what b would take over.
            found = registry.version(name, newest.version) if newest is not None else None
    except RegistryError as exc:
        if not exc.not_found:
            raise
        found = None
    if found is not None:
        return found
    if not _model_exists(registry, name):
        raise missing(param, f"{param}: there is no registered model '{name}'")
    raise missing(param, f"{param}: {_what(ref)} does not exist")


def _what(ref: ModelsRef) -> str:
    if ref.version is not None:
        return f"'{ref.name}' version {ref.version}"
    if ref.alias is not None:
        return f"a version of '{ref.name}' with alias @{ref.alias}"
    if ref.stage is not None:
        return f"a version of '{ref.name}' in stage {ref.stage}"
    return f"a version of '{ref.name}'"


def _model_exists(registry: Registry, name: str) -> bool:
    try:
        registry.model(name)
    except RegistryError as exc:
        if exc.not_found:
            return False
        raise
    return True


@dataclass
class Comparison:
    """``b`` (the challenger's side of the diff) against ``a`` (the champion's side)."""

    workspace: str
    a: Version
    b: Version
    a_ref: ModelsRef
    b_ref: ModelsRef
    diff: diff.ModelDiff
    proposals: list[Change] = field(default_factory=list)  # what "open a promote request for this" offers
    held: list[str] = field(default_factory=list)  # targets of a's that b holds already

    @property
    def across_models(self) -> bool:
        return self.a.name != self.b.name


def compare(registry: Registry, workspace: str, a_model: str, a: str | None, b_model: str, b: str | None) -> Comparison:
    """Resolve both references, load both sides as a request's diff does, and diff them. The
    caller has checked that both models may be read; every 400/404 is raised before any run is read."""
    a_ref, b_ref = parse_ref(a_model, a, "a"), parse_ref(b_model, b, "b")
    a_version = resolve(registry, a_ref, "a")
    b_version = resolve(registry, b_ref, "b")
    new, old = diff.load_sides(registry, b_version, a_version)
    found = diff.compute_diff(new, old)
    proposals, held = propose(a_version, b_version, a_ref, workspace)
    return Comparison(workspace, a_version, b_version, a_ref, b_ref, found, proposals, held)


def propose(a: Version, b: Version, a_ref: ModelsRef, workspace: str) -> tuple[list[Change], list[str]]:
    """The changes that put ``b`` where ``a`` is, and the targets ``b`` holds already.

    Same model: ``b`` takes each alias ``a`` holds (the one ``a`` was asked by first) and its stage
    if promoted. Across models: ``b`` copied into ``a``'s model as a new version (pinned to its
    number, never a reference that may move)."""
    if a.name != b.name:
        return [CreateVersion(a.name, source=f"models:/{b.name}/{b.version}", workspace=workspace)], []
    aliases = sorted(a.aliases, key=lambda alias: (alias != a_ref.alias, alias))
    changes: list[Change] = []
    held: list[str] = []
    for alias in aliases:
        if alias in b.aliases:
            held.append(f"@{alias}")
        else:
            changes.append(SetAlias(a.name, alias=alias, version_=b.version, workspace=workspace))
    if a.stage in HELD_STAGES:
        if b.stage == a.stage:
            held.append(a.stage)
        else:
            changes.append(Transition(a.name, version_=b.version, stage=a.stage, workspace=workspace))
    return changes, held
