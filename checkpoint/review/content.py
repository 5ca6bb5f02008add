"""A registered version's files: where they live, whether an artifact write reaches them, and
the digest a review is bound to.

MLflow does not copy a version's files when it registers them: ``models:/fraud@champion`` loads
from the run's or the logged model's artifact directory, and a copy into ``prod.*`` points at
that same directory. So every registered version's storage location is immutable through
Checkpoint: any version may be copied or promoted later, and a write there after registration
changes what was (or will be) reviewed. Writes elsewhere (a run's other files, a logged model
not registered yet) pass.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from checkpoint.registry import Registry, RegistryError, RegistryUnavailable, Version

SERVED = "mlflow-artifacts"  # the root of the store MLflow's artifact proxy serves
RUN_ID = re.compile(r"^[0-9a-f]{32}$")  # MLflow's run ids: uuid4 hex
MODEL_ID = re.compile(r"^m-[0-9a-f]{32}$")  # MLflow 3's logged model ids
# The files that say what a model is and what it needs; always hashed, whatever the budget.
DEFINING = ("MLmodel", "requirements.txt", "conda.yaml", "python_env.yaml")
DEFINING_MAX = 1024 * 1024  # a defining file larger than this is no longer "small": it uses the budget
MAX_DEPTH, MAX_ENTRIES, MAX_SEGMENTS = 32, 20000, 256


class ContentError(ValueError):
    """An artifact call Checkpoint cannot place (a path MLflow would not decode either)."""


# -- places -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """A storage location as comparable segments: the served store (``mlflow-artifacts``) or
    another store's ``scheme://netloc``, and the path's segments below it."""

    root: str
    parts: tuple[str, ...]

    def overlaps(self, other: Place) -> bool:
        """Whether a write or delete at one can change a file at the other (same directory,
        or one inside the other)."""
        if self.root != other.root:
            return False
        n = min(len(self.parts), len(other.parts))
        return self.parts[:n] == other.parts[:n]

    def child(self, path: str) -> Place:
        return Place(self.root, self.parts + split_path(path))

    def __str__(self) -> str:
        return f"{self.root}:/{'/'.join(self.parts)}" if self.root == SERVED else f"{self.root}/{'/'.join(self.parts)}"

    @property
    def path(self) -> str:
        return "/".join(self.parts)


def decode(path: str) -> str:
    """Percent-decode until nothing changes, as MLflow does with an artifact path before it
    uses it (``validate_path_is_safe``): ``%252F`` names the same file as ``/``."""
    for _ in range(10):
        decoded = unquote(path)
        if decoded == path:
            return path
        path = decoded
    raise ContentError("the artifact path is percent-encoded more than ten times over")


def split_path(path: str) -> tuple[str, ...]:
    """The segments of an artifact path after decoding, with ``//``, ``.`` and ``..`` resolved
    the way the file system or object store would (MLflow refuses ``..``; resolving it is the
    safe side either way)."""
    parts: list[str] = []
    for segment in decode(path).split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if parts:
                parts.pop()
            continue
        parts.append(segment)
    if len(parts) > MAX_SEGMENTS:
        raise ContentError(f"the artifact path has more than {MAX_SEGMENTS} segments")
    return tuple(parts)


def place_of_uri(uri: str) -> Place | None:
    """Where an artifact URI points; None for indirections (``runs:/``, ``models:/``)."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("runs", "models"):
        return None
    if scheme == SERVED:
        return Place(SERVED, split_path(parts.path))
    if scheme in ("http", "https"):
        marker = "/mlflow-artifacts/artifacts"
        if marker in parts.path:
            return Place(SERVED, split_path(parts.path.split(marker, 1)[1]))
    if scheme in ("", "file"):
        return Place("file://", split_path(parts.path))
    return Place(f"{scheme}://{parts.netloc}", split_path(parts.path))


def version_place(registry: Registry, version: Version) -> Place | None:
    """Where MLflow loads ``version``'s files from (its download URI, resolved)."""
    uri = registry.download_uri(version.name, version.version)
    return resolve_uri(registry, uri)


def resolve_uri(registry: Registry, uri: str) -> Place | None:
    place = place_of_uri(uri)
    if place is not None:
        return place
    parts = urlsplit(uri)
    if parts.scheme == "runs":
        run_id, _, sub = (parts.netloc + parts.path).strip("/").partition("/")
        base = place_of_uri(registry.run(run_id)["info"]["artifact_uri"])
        return base.child(sub) if base else None
    if parts.scheme == "models" and MODEL_ID.match((parts.netloc + parts.path).strip("/")):
        return place_of_uri(registry.logged_model((parts.netloc + parts.path).strip("/")).get("artifact_uri", ""))
    return None


# -- artifact writes --------------------------------------------------------------------


@dataclass(frozen=True)
class ArtifactWrite:
    """One call that writes or deletes artifact files: the route's own path (relative to the
    served store), or a run's or logged model's directory and a path inside it."""

    verb: str  # write / delete
    path: str = ""
    run_id: str = ""
    model_id: str = ""
    workspace: str = ""  # the MLflow workspace the call acts in ("" = the default one)

    @classmethod
    def from_query(cls, verb: str, query: str) -> ArtifactWrite:
        """MLflow's UI upload (``?run_uuid=&path=``); Flask reads the first of repeated keys."""
        first: dict[str, str] = {}
        for key, value in parse_qsl(query, keep_blank_values=True):
            first.setdefault(key, value)
        return cls(verb, path=first.get("path", ""), run_id=first.get("run_uuid", ""))

    @classmethod
    def from_body(cls, verb: str, body: dict) -> ArtifactWrite:
        """A presigned upload: ``run_id`` or ``model_id`` and ``path`` (camelCase too)."""

        def text(name: str, camel: str) -> str:
            value = body.get(name, body.get(camel, ""))
            return value if isinstance(value, str) else ""

        return cls(verb, path=text("path", "path"), run_id=text("run_id", "runId"), model_id=text("model_id", "modelId"))

    def place(self, registry: Registry) -> Place | None:
        """Where the call writes; None when the run or logged model it names does not exist
        (MLflow refuses the call itself)."""
        if not self.run_id and not self.model_id:
            return Place(SERVED, split_path(served_path(self.path, self.workspace)))
        try:
            if self.run_id:
                base = place_of_uri(registry.run(self.run_id)["info"]["artifact_uri"])
            else:
                base = place_of_uri(registry.logged_model(self.model_id).get("artifact_uri", ""))
        except RegistryError as exc:
            if exc.not_found or exc.status == 400:
                return None
            raise
        return base.child(self.path) if base else None


def served_path(path: str, workspace: str) -> str:
    """Where MLflow's artifact proxy puts ``path`` for a call in ``workspace``: with workspaces on,
    a path outside the default workspace is rooted at ``workspaces/<workspace>/`` unless it names
    that root itself (MLflow's ``_get_workspace_scoped_repo_path_if_enabled``; one naming another
    workspace's root is refused by MLflow). A run's or logged model's artifact URI carries the
    root already."""
    normalized = decode(path).lstrip("/")
    if not workspace or normalized.split("/", 1)[0] == "workspaces":
        return path
    return f"workspaces/{workspace}/{normalized}"


@dataclass(frozen=True)
class Hit:
    """A registered version whose files a write would reach."""

    version: Version
    place: Place


def versions_reached(registry: Registry, place: Place, run_id: str = "", model_id: str = "") -> list[Hit]:
    """The registered versions whose storage location overlaps ``place``, asked of MLflow now.

    Candidates come from the run and logged-model ids in the path (versions record the run
    that made them, and a logged model's source run; sources name their run or model), then
    each candidate's download URI decides. A path with no id at all is matched against
    versions whose source names its first segment.
    """
    run_ids = {p for p in place.parts if RUN_ID.match(p)} | ({run_id} if run_id else set())
    model_ids = {p for p in place.parts if MODEL_ID.match(p)} | ({model_id} if model_id else set())
    for mid in sorted(model_ids):
        try:
            source_run = registry.logged_model(mid).get("source_run_id") or ""
        except RegistryError as exc:
            if not (exc.not_found or exc.status == 400):
                raise
            continue
        if source_run:
            run_ids.add(source_run)
    candidates: dict[tuple[str, str], Version] = {}

    def add(found: Iterable[Version]) -> None:
        for v in found:
            candidates.setdefault((v.name, v.version), v)

    if run_ids:
        listed = ", ".join(f"'{r}'" for r in sorted(run_ids))
        add(registry.search_versions(f"run_id IN ({listed})"))
    ids = sorted(run_ids | model_ids)
    for ident in ids:
        add(registry.search_versions(f"source_path LIKE '%{ident}%'"))
    if not ids and place.parts:
        add(registry.search_versions(f"source_path LIKE '%{_like(place.parts[0])}%'"))
    hits = []
    for version in candidates.values():
        try:
            where = version_place(registry, version)
        except RegistryError as exc:
            if exc.not_found:  # deleted in between
                continue
            raise
        if where is not None and where.overlaps(place):
            hits.append(Hit(version, where))
    return sorted(hits, key=lambda h: (h.version.name, int(h.version.version or 0)))


def _like(value: str) -> str:
    """A value inside a quoted LIKE pattern of MLflow's filter grammar (``_`` and ``%`` only
    widen the match; the download URIs decide)."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


@dataclass(frozen=True)
class Refusal:
    """Why an artifact call may not pass; ``model`` is the registered model it names (None when
    it names none), so a caller who may not read that model can be told less."""

    message: str
    model: str | None = None

    def __str__(self) -> str:
        return self.message

    def redacted(self) -> str:
        """The same refusal without the model's name, version, stage or location."""
        return (
            "this artifact call is refused: it reaches the files of a registered model version, which are "
            "immutable through Checkpoint"
        )


def refusal(registry: Registry, write: ArtifactWrite) -> Refusal | None:
    """Why this artifact call may not pass, or None. Deletes that no run or logged model id
    bounds (the store's root, an experiment's directory) may remove any version's files."""
    place = write.place(registry)
    if place is None:
        return None
    where = f"'{place.path}'" if place.root == SERVED else f"'{place}'"
    has_id = any(RUN_ID.match(p) or MODEL_ID.match(p) for p in place.parts) or write.run_id or write.model_id
    if write.verb == "delete" and not has_id:
        return Refusal(
            f"deleting {where} is refused: it is not inside one run's or one logged model's directory, "
            "so it may remove the files of registered model versions"
        )
    hits = versions_reached(registry, place, write.run_id, write.model_id)
    if not hits:
        return None
    first = hits[0].version
    stage = f", stage {first.stage}" if first.stage not in ("None", "") else ""
    more = f" and {len(hits) - 1} other version(s)" if len(hits) > 1 else ""
    action = "deleting" if write.verb == "delete" else "writing"
    return Refusal(
        f"{action} {where} is refused: it is inside the files of registered model '{first.name}' version "
        f"{first.version}{stage}{more} (stored at {hits[0].place}). A registered version's files are "
        "immutable through Checkpoint: log the new files as a new model and register it as a new version, "
        "then ask for its promotion",
        first.name,
    )


# -- digest -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Digest:
    """sha256 over a version's file listing (path, size) and its files' bytes, as far as the
    budget reaches; ``value`` None with ``error`` when the files could not be read."""

    value: str | None
    files: int = 0
    hashed_bytes: int = 0
    partial: bool = False
    error: str = ""

    def to_json(self) -> dict:
        out: dict = {"digest": self.value, "digest_files": self.files, "digest_partial": self.partial}
        if self.error:
            out["digest_error"] = self.error
        return out


def listing(registry: Registry, place: Place) -> list[tuple[str, int]]:
    """Every file under ``place`` (relative path, size), sorted; bounded in depth and count."""
    out: list[tuple[str, int]] = []
    todo: list[tuple[str, int]] = [("", 0)]
    while todo:
        rel, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise ContentError(f"the model directory is deeper than {MAX_DEPTH} levels")
        for name, is_dir, size in registry.list_artifacts("/".join(filter(None, (place.path, rel)))):
            child = f"{rel}/{name.rsplit('/', 1)[-1]}" if rel else name.rsplit("/", 1)[-1]
            if is_dir:
                todo.append((child, depth + 1))
            else:
                out.append((child, size))
            if len(out) + len(todo) > MAX_ENTRIES:
                raise ContentError(f"the model directory holds more than {MAX_ENTRIES} entries")
    return sorted(out)


def digest(registry: Registry, version: Version, max_bytes: int) -> Digest:
    """The content digest of ``version``'s files (see :class:`Digest`).

    Read through MLflow's artifact proxy: the listing first, then the defining files, then
    the other files in path order while ``max_bytes`` lasts.
    """
    try:
        place = version_place(registry, version)
        if place is None or place.root != SERVED:
            return Digest(
                None,
                error=f"the files are stored at {place or 'an unknown place'}, which Checkpoint "
                "reads only through MLflow's artifact proxy (--serve-artifacts)",
            )
        files = listing(registry, place)
        h = hashlib.sha256(b"checkpoint-content-digest-v1\n")
        h.update(json.dumps(files, separators=(",", ":")).encode())
        defining = [(p, s) for p, s in files if p in DEFINING and s <= DEFINING_MAX]
        others = [(p, s) for p, s in files if (p, s) not in defining]
        budget, hashed, partial = max_bytes, 0, False
        for rel, size in defining + others:
            free = (rel, size) in defining
            if not free and size > budget:
                partial = True
                continue
            h.update(json.dumps([rel, size]).encode())
            read = 0
            for chunk in registry.read_artifact(f"{place.path}/{rel}", limit=size):
                h.update(chunk)
                read += len(chunk)
            if read != size:  # changed while read: the digest must not match any earlier one
                h.update(f"short:{read}".encode())
            hashed += read
            if not free:
                budget -= size
        return Digest(h.hexdigest(), files=len(files), hashed_bytes=hashed, partial=partial)
    except RegistryUnavailable:
        raise  # MLflow down is no change of content: the caller fails and is retried
    except (RegistryError, ContentError, KeyError, TypeError) as exc:
        message = exc.message if isinstance(exc, RegistryError) else str(exc)
        return Digest(None, error=f"could not read the files: {message}")
