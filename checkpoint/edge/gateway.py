"""The catch-all in front of everything.

Checkpoint's own paths go to Flask. A call the rules table marks for inspection is
parsed into a Change; if it is governed it becomes a promote request (API clients) or a
pointer to the new-request form (MLflow's UI), answered 403 in MLflow's JSON error shape
(never 429 or 5xx: MLflow's client and UI retry those for minutes). Everything else
streams to MLflow untouched. Plain WSGI, so a proxied call pays for no Flask routing.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from http import HTTPStatus

from checkpoint import urls
from checkpoint.edge import rules
from checkpoint.edge.bodies import discard_input
from checkpoint.edge.proxy import Proxy, host_allowed
from checkpoint.errors import CheckpointError
from checkpoint.identity import Authenticator, NoAuth, Unauthenticated, User, bearer_token
from checkpoint.registry import WORKSPACE_HEADER, RegistryError, RegistryUnavailable
from checkpoint.review.changes import Change, ChangeError, canonical_workspace, from_body, parse_body
from checkpoint.review.content import ArtifactWrite, ContentError
from checkpoint.review.visibility import reader_for
from checkpoint.review.workflow import Workflow, WorkflowError
from checkpoint.runtime import logs, metrics

log = logging.getLogger("checkpoint.views.gateway")  # the name operators filter the JSON logs on
OWN_PREFIX = "/checkpoint"
# Probes from load balancers and orchestrators use whatever Host they like.
HOST_EXEMPT = ("/checkpoint/healthz", "/checkpoint/readyz", "/checkpoint/metrics", "/health", "/version")
# MLflow serves its UI's one HTML document at these paths (../shared/MLFLOW.md §4); under a
# --static-prefix they gain that prefix, hence the suffix match.
INDEX_PATHS = ("/", "/static-files/index.html", "/build/index.html")
PANEL_TAGS = (
    b'<link rel="stylesheet" href="/checkpoint/static/panel.css"><script defer src="/checkpoint/static/panel.js"></script>'
)
MAX_GOVERNED_BODY = 1024 * 1024  # registry calls are small JSON; anything bigger is not one


class Gateway:
    """Dispatch one WSGI call to Checkpoint's Flask app, the workflow, or the proxy."""

    def __init__(
        self,
        flask_wsgi: Callable,
        proxy: Proxy,
        workflow: Workflow,
        public_url: str | None = None,
        auth: Authenticator | None = None,
        allowed_hosts: tuple[str, ...] = (),
        on_first_call: Callable[[], object] | None = None,
    ) -> None:
        self.flask_wsgi = flask_wsgi
        # The process's start-up work, run (once; it guards itself) before the first call it serves.
        self.on_first_call = on_first_call
        self.proxy = proxy
        self.workflow = workflow
        self.public_url = public_url
        self.auth = auth or NoAuth()
        self.allowed_hosts = allowed_hosts
        # Identity headers (header mode) never reach MLflow: from an untrusted peer they are
        # spoofed, from the trusted proxy they are Checkpoint's business only.
        self.drop = self.auth.forwarded_drop

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        """Give the call its request id (logs.py) and count its answer (metrics.py), then dispatch it."""
        if self.on_first_call is not None:
            self.on_first_call()
            self.on_first_call = None
        rid = logs.request_id(environ.get("HTTP_X_REQUEST_ID"))
        environ["HTTP_X_REQUEST_ID"] = rid  # the proxy passes it on to MLflow
        environ[logs.ENVIRON_KEY] = rid
        logs.REQUEST_ID.set(rid)
        environ["checkpoint.route"] = metrics.route_class(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""))

        def respond(status: str, headers: list, exc_info=None):
            if not any(name.lower() == "x-request-id" for name, _ in headers):
                headers.append(("X-Request-Id", rid))
            metrics.count_request(environ["checkpoint.route"], status)
            return start_response(status, headers, exc_info)

        return self.dispatch(environ, respond)

    def dispatch(self, environ: dict, start_response) -> Iterable[bytes]:
        refusal = self.malformed(environ)
        if refusal:
            return _json(start_response, 400, {"error_code": "BAD_REQUEST", "message": f"Checkpoint: {refusal}"})
        path = environ.get("PATH_INFO", "")
        host = environ.get("HTTP_HOST", "")
        if path not in HOST_EXEMPT and not host_allowed(host, self.public_url, self.allowed_hosts):
            body = (
                f"Invalid Host header - possible DNS rebinding attack detected. If {host!r} is how people reach "
                "Checkpoint, set CHECKPOINT_PUBLIC_URL or add it to CHECKPOINT_ALLOWED_HOSTS."
            ).encode()
            start_response("403 Forbidden", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]
        if path == OWN_PREFIX or path.startswith(OWN_PREFIX + "/"):
            return self.flask_wsgi(environ, start_response)
        if bearer_token(environ) is not None:
            return self.token_refused(environ, start_response)
        method = environ["REQUEST_METHOD"]
        if method in ("GET", "HEAD") and _is_index(path):
            return self.index(environ, start_response)
        if method.upper() not in rules.RULED_METHODS:  # a read: no rule can match it
            return self.forward(environ, start_response)
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or path
        normalised = rules.normalise(raw)  # once for both tables
        artifact = rules.match_artifact(method, raw, normalised)
        if artifact is not None and artifact[0].verb != "read":
            return self.guard_artifact(environ, start_response, *artifact)
        rule = rules.match(method, raw, normalised)
        if rule is None or rule.action is rules.Action.PASS:
            return self.forward(environ, start_response)
        return self.inspect(environ, start_response, rule)

    def token_refused(self, environ: dict, start_response) -> Iterable[bytes]:
        """A Checkpoint token is for Checkpoint's API only: never forwarded (MLflow would log or
        refuse a secret it cannot check; in ``mlflow`` mode it holds no password to act with)."""
        discard_input(environ)
        message = (
            "Checkpoint: a Checkpoint token (cpt_...) works only for Checkpoint's API under /checkpoint/api/v1; "
            "call MLflow with your MLflow credentials (MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN)"
        )
        return _json(start_response, 401, {"error_code": "UNAUTHENTICATED", "message": message})

    def malformed(self, environ: dict) -> str | None:
        """What makes this request one Checkpoint will not read, if anything.

        A raw non-ASCII byte in the request target (HTTP wants it percent-encoded) broke the
        forwarding with a 500; a repeated identity header (header mode) would be read joined.
        """
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        target = raw if raw is not None else environ.get("QUERY_STRING", "")  # PATH_INFO is decoded already
        if not target.isascii():
            at = next(i for i, ch in enumerate(target) if not ch.isascii())
            return (
                f"the request target holds a raw non-ASCII byte (0x{ord(target[at]) & 0xFF:02X} at position {at}): "
                "percent-encode it, e.g. %C3%A9 for é"
            )
        repeated = getattr(self.auth, "repeated", None)
        names = repeated(environ) if repeated else []
        if names:
            return f"the identity header {', '.join(names)} was sent more than once: send it once (a list goes comma-separated)"
        return None

    def forward(self, environ: dict, start_response) -> Iterable[bytes]:
        """To MLflow, without identity headers (header mode)."""
        if self.drop and not self.drop.isdisjoint(environ):
            environ = {k: v for k, v in environ.items() if k not in self.drop}
        return self.proxy(environ, start_response)

    # -- MLflow's index page ---------------------------------------------------------

    def index(self, environ: dict, start_response) -> Iterable[bytes]:
        """MLflow's UI document with the panel's script and stylesheet added.

        Validators are dropped both ways: a 304 from MLflow would skip the rewrite, and
        the rewritten page is not the one MLflow's ETag names.
        """
        environ = {k: v for k, v in environ.items() if k not in ("HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE")}
        environ = {k: v for k, v in environ.items() if k not in self.drop}
        return self.proxy.forward(environ, start_response, transform=_inject_panel)

    # -- artifact writes -------------------------------------------------------------

    def guard_artifact(self, environ: dict, start_response, rule: rules.ArtifactRule, path: str) -> Iterable[bytes]:
        """An artifact write or delete passes, streamed and untouched, unless it reaches a
        registered version's files; then a 403 that says which, and why."""
        body = None
        try:
            workspace = self.workspace(environ)  # where MLflow will write, and where to look up versions
            if rule.where == "query":
                write = ArtifactWrite.from_query(rule.verb, environ.get("QUERY_STRING", ""))
            elif rule.where == "body":  # a small JSON call (presigned upload), never a file
                body = _read_body(environ)
                write = ArtifactWrite.from_body(rule.verb, parse_body("POST", environ.get("CONTENT_TYPE", ""), body))
            else:
                write = ArtifactWrite(rule.verb, path=path)
            reason = self.workflow.artifact_refusal(replace(write, workspace=workspace))
        except (ChangeError, ContentError) as exc:
            discard_input(environ)
            return _error(start_response, CheckpointError(400, "INVALID_PARAMETER_VALUE", f"Checkpoint: {exc}"))
        except RegistryUnavailable as exc:
            discard_input(environ)
            return _error(start_response, _unavailable(exc))
        except RegistryError as exc:  # the lookup failed: refuse (never pass unchecked), never a 5xx
            discard_input(environ)
            return _error(
                start_response,
                CheckpointError(
                    403,
                    "PERMISSION_DENIED",
                    f"Checkpoint: could not tell whether this artifact call reaches a registered "
                    f"model version's files (MLflow: {exc.message}), so it is refused",
                ),
            )
        if body is not None:
            environ = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        if reason is None:
            return self.forward(environ, start_response)
        # Refused before the upload was read: a small one is taken off the connection, as the
        # proxy does when MLflow fails (Proxy.fail), so the client's next call starts clean.
        discard_input(environ)
        environ["checkpoint.route"] = "governed"
        try:
            user = self.auth.user(environ)
        except Unauthenticated as exc:  # who may not sign in learns nothing about the registry
            return _json(
                start_response, 401, {"error_code": "UNAUTHENTICATED", "message": f"Checkpoint: {exc.message}"}, list(exc.headers)
            )
        if user.anonymous and self.auth.mode != "none":
            return _json(
                start_response, 401, {"error_code": "UNAUTHENTICATED", "message": "Checkpoint: sign in to write artifacts"}
            )
        environ[logs.USER_KEY] = user.name
        metrics.count_governed("artifact_" + rule.verb, "refused")
        log.info("artifact %s refused for %s: %s", rule.verb, user.name, reason)
        shown = str(reason)
        reader = reader_for(self.auth.mode, self.workflow.registry, user, environ)
        if reason.model and not reader.can_read(reason.model, workspace):
            shown = reason.redacted()  # a caller who may not read the model learns nothing of it
        return _json(start_response, 403, {"error_code": "PERMISSION_DENIED", "message": f"Checkpoint: {shown}"})

    # -- governed routes -------------------------------------------------------------

    def inspect(self, environ: dict, start_response, rule: rules.Rule) -> Iterable[bytes]:
        origin = environ.get("HTTP_ORIGIN")
        if origin and not self.proxy.origin_allowed(environ, origin):
            return self.forward(environ, start_response)  # the proxy refuses it as MLflow would
        try:
            workspace = self.workspace(environ)
            body = _read_body(environ)
            parsed = parse_body(environ["REQUEST_METHOD"], environ.get("CONTENT_TYPE", ""), body)
            change = from_body(rule.kind or "", parsed, workspace)
        except ChangeError as exc:
            return _error(start_response, exc)
        # Who asks comes before any read of the registry, and a refusal says nothing about it:
        # whether the call is governed depends on what holds what, which is not theirs to learn.
        try:
            caller = self.auth.user(environ)
        except Unauthenticated as exc:
            return _json(
                start_response, 401, {"error_code": "UNAUTHENTICATED", "message": f"Checkpoint: {exc.message}"}, list(exc.headers)
            )
        if caller.anonymous and self.auth.mode != "none":
            return _json(
                start_response,
                401,
                {
                    "error_code": "UNAUTHENTICATED",
                    "message": "Checkpoint: sign in through your single sign-on to request this change",
                },
            )
        if not reader_for(self.auth.mode, self.workflow.registry, caller, environ).can_read_change(change):
            # What MLflow answers a caller who may not read the model; no request, nothing read for them.
            return _json(start_response, 403, {"error_code": "PERMISSION_DENIED", "message": "Permission denied"})
        try:
            reason = self.workflow.governed(change)
        except RegistryError as exc:
            return _error(start_response, _mlflow_refused(exc, otherwise=502, quoted=False))
        except ChangeError as exc:
            return _error(start_response, exc)
        if reason is None and self.workflow.creates_for_caller(change):
            return self.create_for_caller(environ, start_response, change)
        if reason is None:
            environ = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            return self.forward(environ, start_response)
        try:
            unchanged = self.workflow.already_true(change)
        except RegistryError as exc:
            return _error(start_response, _mlflow_refused(exc, otherwise=502, quoted=False))
        if unchanged is not None:  # a no-op: MLflow's answer, nothing opened, nothing sent to MLflow
            environ["checkpoint.route"] = "governed"
            log.info("governed call %s by %s changes nothing: answered as MLflow would", change.kind, caller.name)
            return _json(start_response, 200, unchanged)
        base = urls.public_base(environ, self.public_url)
        environ["checkpoint.route"] = "governed"
        if rules.is_ui_call(environ.get("RAW_URI") or environ.get("PATH_INFO", "")):
            metrics.count_governed(change.kind, "ui")
            return self.ui_answer(start_response, change, reason, base)
        return self.api_answer(environ, start_response, change, reason, base, caller)

    def workspace(self, environ: dict) -> str:
        """The MLflow workspace this call acts in ("" = the default), read from exactly the headers
        the proxy would send MLflow (a header named in ``Connection`` or dropped in header mode
        never reaches it), canonicalised as MLflow does; a value MLflow refuses is refused (400)."""
        if self.drop and not self.drop.isdisjoint(environ):
            environ = {k: v for k, v in environ.items() if k not in self.drop}
        wanted = WORKSPACE_HEADER.lower()
        raw = next((v for k, v in self.proxy.request_headers(environ).items() if k.lower() == wanted), None)
        return canonical_workspace(raw)

    def create_for_caller(self, environ: dict, start_response, change: Change) -> Iterable[bytes]:
        """A protected model is created by Checkpoint's account (Workflow.creates_for_caller);
        the caller gets MLflow's own answer, errors included (copy_model_version goes on after
        RESOURCE_ALREADY_EXISTS)."""
        try:
            author = self.auth.user(environ)
        except Unauthenticated as exc:
            return _json(
                start_response, 401, {"error_code": "UNAUTHENTICATED", "message": f"Checkpoint: {exc.message}"}, list(exc.headers)
            )
        try:
            created = self.workflow.create_for_caller(change, author.name)
        except RegistryError as exc:  # MLflow's own answer, as the caller would have had it
            return _error(start_response, _mlflow_refused(exc, otherwise=502, quoted=False, feature_disabled=False))
        return _json(start_response, 200, created)

    def ui_answer(self, start_response, change: Change, reason: str, base: str) -> Iterable[bytes]:
        """MLflow's UI gets a pointer to the pre-filled form; the injected script follows it."""
        url = urls.new_request_page(base, urls.change_token(change.to_json()))
        payload = {
            "error_code": "PERMISSION_DENIED",
            "message": f"Checkpoint: {change.describe()}{change.where()} needs review ({reason}) — open a promote request: {url}",
            "checkpoint": {"action": "new_request", "url": url, "change": change.to_json(), "reason": reason},
        }
        return _json(start_response, 403, payload, [("X-Checkpoint-New-Request", url)])

    def api_answer(self, environ: dict, start_response, change: Change, reason: str, base: str, author: User) -> Iterable[bytes]:
        """Programs get a promote request opened for them, and its address."""
        if author.anonymous:  # only without authentication (none mode): nobody to author it
            return _json(start_response, 401, {"error_code": "UNAUTHENTICATED", "message": nameless(change)})
        try:
            request, created = self.workflow.open(change, author)
        except RegistryError as exc:  # MLflow refused a lookup (version 'abc'): never a 500, which clients retry
            return _error(start_response, _mlflow_refused(exc, otherwise=422, quoted=True))
        except WorkflowError as exc:
            return _error(start_response, exc)
        environ[logs.USER_KEY] = author.name
        metrics.count_governed(change.kind, "opened" if created else "existing")
        url = urls.request_page(base, request.id)
        state = "" if request.state == "open" else f" (now {request.state})"
        when = self.workflow.freeze_note(request) if request.state == "open" else None
        payload = {
            "error_code": "PERMISSION_DENIED",
            "message": f"Checkpoint: {change.describe()}{change.where()} needs review — "
            f"promote request #{request.id}{state}: {url}" + (f" — {when}" if when else ""),
            "checkpoint": {
                "action": "request_opened" if created else "request_exists",
                "request_id": request.id,
                "url": url,
                "reason": reason,
            },
        }
        log.info(
            "governed call %s by %s -> request #%s (%s)",
            change.kind,
            author.name,
            request.id,
            "opened" if created else "existing",
        )
        return _json(start_response, 403, payload, [("Location", url), ("X-Checkpoint-Request", str(request.id))])


def nameless(change: Change) -> str:
    """What an MLflow client that sent no name is told (``CHECKPOINT_AUTH=none``). Its usual cause:
    MLflow's client sends ``MLFLOW_TRACKING_USERNAME`` only when ``MLFLOW_TRACKING_PASSWORD`` is set
    too (``mlflow/utils/rest_utils.py``), so a username alone reaches nobody."""
    return (
        f"Checkpoint: {change.describe()}{change.where()} needs review, and a promote request needs the name of who "
        "asks: this call carried none. The MLflow client sends MLFLOW_TRACKING_USERNAME only together with "
        "MLFLOW_TRACKING_PASSWORD: set both (this Checkpoint runs without authentication and does not check the "
        "password; any value will do)"
    )


def _is_index(path: str) -> bool:
    return path.endswith(INDEX_PATHS[1:]) or path == "/" or (path.endswith("/") and path.count("/") == 2)


def _inject_panel(status: int, headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    """Add the panel before ``</head>`` of an HTML answer; anything else passes untouched."""
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    marker = body.rfind(b"</head>")
    if status != 200 or "text/html" not in content_type or marker < 0:
        return headers, body
    kept = {k: v for k, v in headers.items() if k.lower() not in ("etag", "last-modified", "cache-control")}
    kept["Cache-Control"] = "no-cache"
    return kept, body[:marker] + PANEL_TAGS + body[marker:]


def _read_body(environ: dict) -> bytes:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH", "").strip()
    if length:
        if not length.isdigit() or int(length) > MAX_GOVERNED_BODY:
            raise ChangeError(f"request body too large for a registry call (at most {MAX_GOVERNED_BODY} bytes)")
        return stream.read(int(length)) if int(length) else b""
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower() or environ.get("wsgi.input_terminated"):
        data = stream.read(MAX_GOVERNED_BODY + 1)
        if len(data) > MAX_GOVERNED_BODY:
            raise ChangeError(f"request body too large for a registry call (at most {MAX_GOVERNED_BODY} bytes)")
        return data
    return b""


def _mlflow_refused(exc: RegistryError, otherwise: int, quoted: bool, feature_disabled: bool = True) -> CheckpointError:
    """What an MLflow client is told when MLflow refused a lookup Checkpoint made for its call.

    MLflow's client and UI retry a 5xx for minutes, so a refusal keeps MLflow's 4xx and
    anything else becomes ``otherwise``; an unreachable MLflow is Checkpoint's own 502. A
    workspace named to a server without workspaces (``FEATURE_DISABLED``) is the caller's 400.
    ``quoted`` marks MLflow's words as MLflow's (a request was being opened for the caller).
    """
    if isinstance(exc, RegistryUnavailable):
        return _unavailable(exc)
    if feature_disabled and exc.error_code == "FEATURE_DISABLED":
        return CheckpointError(400, "INVALID_PARAMETER_VALUE", f"MLflow: {exc.message}")
    return CheckpointError(
        exc.status if 400 <= exc.status < 500 else otherwise, exc.error_code, f"MLflow: {exc.message}" if quoted else exc.message
    )


def _unavailable(exc: RegistryUnavailable) -> CheckpointError:
    return CheckpointError(502, "TEMPORARILY_UNAVAILABLE", f"Checkpoint: {exc.message}")


def _error(start_response, error: CheckpointError, headers: list | None = None) -> list[bytes]:
    """The gateway's renderer of the one error base: MLflow's JSON error shape, as its clients read it."""
    return _json(start_response, error.status, error.payload(), headers)


def _json(start_response, status: int, payload: dict, headers: list | None = None) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *(headers or [])],
    )
    return [body]
