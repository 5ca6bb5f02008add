"""The `checkpoint` command: serve, database migrations, the audit tools, the demo, and the commands
pipelines run (``request``, ``status``, ``which``, ``timeline``, ``token``). One module over 400 lines:
every command is a thin wrapper over the client, and one click group is easier to read whole than split."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TypeVar

import click

from checkpoint.errors import ConfigError
from checkpoint.settings import Settings

T = TypeVar("T")


def _settings(registry_required: bool = True) -> Settings:
    """The environment's settings; ``registry_required=False`` for commands that only read the
    database (``audit``), which need no MLflow address."""
    try:
        return Settings.from_env(registry_required=registry_required)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
@click.version_option(package_name="checkpoint-mlflow")
def main() -> None:
    """Checkpoint: pull requests for machine-learning models, in front of MLflow."""


@main.command()
@click.option("--host", default=None, help="bind address (default CHECKPOINT_HOST, else 127.0.0.1)")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="port (default CHECKPOINT_PORT, else 5000)")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="gunicorn worker processes (default CHECKPOINT_WORKERS, else the CPU count, at most 4)",
)
@click.option(
    "--threads", type=click.IntRange(1, 1024), default=None, help="threads per worker (default CHECKPOINT_THREADS, else 32)"
)
def serve(host: str | None, port: int | None, workers: int | None, threads: int | None) -> None:
    """Run Checkpoint under gunicorn (migrating the database first)."""
    from checkpoint.edge.serving import serve as run
    from checkpoint.settings import server_knobs

    try:
        knobs = server_knobs()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        run(
            _settings(),
            host or knobs["host"],
            port or knobs["port"],
            workers or knobs["workers"],
            threads or knobs["threads"],
            migrate=_migrate_before_fork,
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def _migrate_before_fork(settings: Settings) -> None:
    """`serve`'s schema step: alembic to head in the master, so workers forked after it find the
    schema current; its pooled connections are closed so no worker inherits one."""
    from checkpoint.storage import db

    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    engine.dispose()


@main.group(name="db")
def db_group() -> None:
    """Database schema commands."""


@db_group.command()
def upgrade() -> None:
    """Apply every pending migration (safe to run on each deploy)."""
    from checkpoint.storage import db

    settings = _settings()
    engine = db.make_engine(settings.database_url)
    revision = db.upgrade(engine)
    click.echo(f"database {engine.url.render_as_string(hide_password=True)} is at revision {revision}")


@db_group.command()
def current() -> None:
    """Print the schema revision the database is at, and the one this code needs."""
    from checkpoint.storage import db

    engine = db.make_engine(_settings(registry_required=False).database_url)
    click.echo(f"current: {db.current_revision(engine) or 'none'}  head: {db.head_revision(engine)}")


@main.group(name="audit")
def audit_group() -> None:
    """The tamper-evident event log: verify its hash chain, export it."""


def _store():
    from sqlalchemy.orm import sessionmaker

    from checkpoint.storage import db
    from checkpoint.storage.store import Store

    engine = db.make_engine(_settings(registry_required=False).database_url)
    try:
        db.check_current(engine)
    except db.SchemaError as exc:
        raise click.ClickException(str(exc)) from exc
    return Store(sessionmaker(engine, expire_on_commit=False))


def _since(value: str | None):
    from datetime import UTC, datetime

    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not an ISO date or time, e.g. 2026-11-01 or 2026-11-01T09:30:00Z") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _keyring():
    """The audit keys this environment gives (a key generated into the data directory
    included; none is made here)."""
    from checkpoint.events.audit import Keyring

    try:
        settings = _settings(registry_required=False).with_audit_key(create=False)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    return Keyring.of(settings.audit_key, *settings.audit_old_keys)


@audit_group.command()
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False), help="verify an export instead of the database")
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default=None, help="the export's format (default: from the file name)"
)
@click.option(
    "--expect",
    "expected",
    multiple=True,
    metavar="ID:HASH",
    help="a head kept earlier (as verify prints it): exit 1 unless event ID still has HASH; repeatable",
)
def verify(path: str | None, fmt: str | None, expected: tuple[str, ...]) -> None:
    """Walk the hash chain with the audit keys; exit 1 and name the first broken link if any
    row was changed, or if an expected head is gone."""
    from checkpoint.events import audit

    try:
        expect = audit.parse_expect(expected)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--expect") from exc
    keys = _keyring()
    if path:
        fmt = fmt or ("csv" if path.endswith(".csv") else "jsonl")
        with open(path, encoding="utf-8") as handle:
            rows = audit.parse_export(handle.read(), fmt)
        verdict = audit.verify(rows, anchor=rows[0]["prev_hash"] if rows else audit.GENESIS, keys=keys, expect=expect)
    else:
        verdict = audit.verify(_store().audit_rows(), keys=keys, expect=expect)
    click.echo(verdict.describe())
    if not verdict.ok:
        sys.exit(1)


@audit_group.command()
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--since", help="only events at or after this ISO date/time (UTC unless it says otherwise)")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="write here instead of stdout")
def export(fmt: str, since: str | None, output: str | None) -> None:
    """Write the event log, with its hashes, as JSON lines or CSV."""
    from checkpoint.events import audit

    rows = _store().audit_rows(since=_since(since))
    chunks = audit.export_jsonl(rows) if fmt == "jsonl" else audit.export_csv(rows)
    if output:
        with open(output, "w", encoding="utf-8", newline="") as handle:
            handle.writelines(chunks)
    else:
        for chunk in chunks:
            click.echo(chunk, nl=False)


@main.command()
@click.option("--port", type=int, default=5000, show_default=True, help="Checkpoint's port")
@click.option("--mlflow-port", type=int, default=5001, show_default=True, help="the demo MLflow server's port")
@click.option("--data-dir", type=click.Path(file_okay=False), default="./checkpoint-demo", show_default=True)
@click.option("--reset", is_flag=True, help="start from an empty demo store")
def demo(port: int, mlflow_port: int, data_dir: str, reset: bool) -> None:
    """Start a seeded MLflow server with Checkpoint in front of it (Ctrl-C stops both)."""
    from checkpoint.demo.run import run

    sys.exit(run(port=port, mlflow_port=mlflow_port, data_dir=data_dir, reset=reset))


# -- for pipelines ------------------------------------------------------------------------

_URL = click.option("--url", envvar="CHECKPOINT_URL", help="Checkpoint's address (or CHECKPOINT_URL)")
# `status set` keeps --url for the CI run's address (as the contract and commit statuses name it).
_CHECKPOINT_URL = click.option(
    "--checkpoint-url", "url", envvar="CHECKPOINT_URL", help="Checkpoint's address (or CHECKPOINT_URL)"
)
# Exit codes of `checkpoint request wait`, so a pipeline can branch on the decision.
WAIT_EXIT = {"applied": 0, "rejected": 1, "withdrawn": 1, "failed": 2}
WAIT_TIMEOUT_EXIT = 3


def _client(url: str | None, login_only: bool = False):
    from checkpoint.client import CheckpointClient

    try:
        return CheckpointClient(url, login_only=login_only)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def _api(call: Callable[[], T]) -> T:
    from checkpoint.client import CheckpointAPIError

    try:
        return call()
    except CheckpointAPIError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot reach Checkpoint: {exc}") from exc


@main.group()
def request() -> None:
    """Promote requests, for pipelines."""


@request.command()
@_URL
@click.option("--model", required=True)
@click.option("--version", "version", required=True)
@click.option("--stage", type=click.Choice(["Staging", "Production", "Archived", "None"], case_sensitive=False))
@click.option("--alias")
@click.option("--copy-to", "copy_to", metavar="MODEL", help="copy the version into this registered model (e.g. prod.<model>)")
@click.option("--archive-existing", is_flag=True, help="with --stage: archive the versions now in that stage")
@click.option("--title", default="", help="default: a description of the change")
@click.option("--description", default="", help="markdown; '-' reads it from standard input")
@click.option("--apply-at", default=None, help="once approved, apply at this time (ISO with offset, e.g. 2026-12-07T08:00Z)")
@click.option("--json", "as_json", is_flag=True, help="print the request as JSON")
@click.option("--quiet", "-q", is_flag=True, help="print only the request's id (for id=$(checkpoint request promote ... -q))")
def promote(url, model, version, stage, alias, copy_to, archive_existing, title, description, apply_at, as_json, quiet) -> None:
    """Open a promote request to move a version to a stage or an alias, or to copy it into another model."""
    if [bool(stage), bool(alias), bool(copy_to)].count(True) != 1:
        raise click.UsageError("give exactly one of --stage, --alias or --copy-to")
    if archive_existing and not stage:
        raise click.UsageError("--archive-existing goes with --stage")
    if description == "-":
        description = click.open_file("-").read()  # get_text_stream is deprecated since click 8.5
    client = _client(url)
    if copy_to:
        made = _api(lambda: client.copy(model, version, copy_to, title=title, description=description, apply_at=apply_at))
    else:
        made = _api(
            lambda: client.promote(
                model,
                version,
                stage=stage,
                alias=alias,
                archive_existing=archive_existing,
                title=title,
                description=description,
                apply_at=apply_at,
            )
        )
    verb = "opened" if made.get("created") else "already open:"
    if as_json:
        click.echo(json.dumps(made, indent=2))
    elif quiet:
        click.echo(f"{verb} promote request #{made['id']} ({made['state']}): {made['url']}", err=True)
        click.echo(made["id"])
    else:
        click.echo(f"{verb} promote request #{made['id']} ({made['state']}): {made['url']}")


@request.command()
@_URL
@click.argument("model")
@click.option("--alias")
@click.option("--stage", type=click.Choice(["Staging", "Production"], case_sensitive=False))
@click.option("--to", "to", help="the version to put back (default: the previous holder)")
@click.option("--title", default="", help="default: Roll back MODEL @ALIAS to vN")
@click.option("--description", default="", help="markdown; '-' reads it from standard input; default names what it undoes")
@click.option("--workspace", help="MLflow workspace (default: the default one)")
@click.option("--json", "as_json", is_flag=True, help="print the request as JSON")
def rollback(url, model, alias, stage, to, title, description, workspace, as_json) -> None:
    """Open a request to put back an earlier holder of an alias or a stage (the previous one, or --to)."""
    if bool(stage) == bool(alias):
        raise click.UsageError("give exactly one of --stage or --alias")
    if description == "-":
        description = click.open_file("-").read()
    client = _client(url)
    made = _api(
        lambda: client.rollback(model, stage=stage, alias=alias, to=to, title=title, description=description, workspace=workspace)
    )
    if as_json:
        click.echo(json.dumps(made, indent=2))
        return
    verb = "opened" if made.get("created") else "already open:"
    found = made.get("rollback") or {}
    how = "" if found.get("verified") else f" (not verified: {found.get('reason')}; the ordinary rule applies)"
    click.echo(f"{verb} rollback request #{made['id']} ({made['state']}): {made['url']}")
    click.echo(f"  {made['title']}{how}")


@request.command()
@_URL
@click.argument("request_id", type=int)
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="seconds to wait")
@click.option("--interval", type=float, default=5.0, show_default=True, help="seconds between polls")
@click.option("--quiet", is_flag=True, help="print only the decision, not the progress while waiting")
def wait(url, request_id, timeout, interval, quiet) -> None:
    """Wait for a decision, printing where the request stands when that changes (on standard
    error). Exit 0 applied, 1 rejected/withdrawn, 2 apply failed, 3 timed out."""
    _wait_for(_client(url), request_id, timeout, interval, quiet)


def _wait_for(client, request_id: int, timeout: float, interval: float, quiet: bool) -> None:
    """Wait for a decision as `request wait` does (and `apply --wait`), then exit with its code."""
    from checkpoint.client import WaitTimeout

    report = None if quiet else (lambda current: click.echo(_progress(request_id, current), err=True))
    try:
        final = _api(lambda: client.wait(request_id, timeout=timeout, interval=interval, on_progress=report))
    except WaitTimeout as exc:
        click.echo(f"promote request #{request_id} is still {exc.request['state']} after {timeout:g} s", err=True)
        sys.exit(WAIT_TIMEOUT_EXIT)
    detail = final.get("apply_result") or final.get("state_reason") or ""
    click.echo(f"promote request #{request_id} {final['state']}" + (f": {detail}" if detail else ""))
    if final["state"] == "rejected":
        for review in final.get("reviews") or ():
            if review.get("verdict") == "reject" and not review.get("dismissed"):
                comment = (review.get("comment") or "").strip() or "(no comment)"
                click.echo(f"  rejected by {review.get('reviewer')}: {comment}")
    sys.exit(WAIT_EXIT[final["state"]])


LIST_STATES = ("open", "approved", "applying", "applied", "failed", "rejected", "withdrawn", "waiting")


def _printable(text: str) -> str:
    """Someone's text for a terminal: no control characters (an escape sequence would act)."""
    return "".join(c if c.isprintable() else "?" for c in text)


@request.command("list")
@_URL
@click.option("--awaiting-me", is_flag=True, help="the open requests waiting for your review")
@click.option("--mine", is_flag=True, help="the requests you opened")
@click.option("--state", type=click.Choice(LIST_STATES))
@click.option("--model")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the page as JSON (requests and next_cursor)")
def request_list(url, awaiting_me, mine, state, model, limit, as_json) -> None:
    """List requests, newest first: one line each (id, state, model and target, approvals, author, link)."""
    client = _client(url)
    page = _api(lambda: client.requests(awaiting_me=awaiting_me, mine=mine, state=state, model=model, limit=limit))
    if as_json:
        click.echo(json.dumps(page, indent=2))
        return
    for item in page["requests"]:
        approvals = item.get("approvals") or {}
        progress = f"{approvals.get('count', 0)}/{approvals.get('required', '?')} approvals"
        title, author = _printable(item["title"]), _printable(item["author"])
        click.echo(f"#{item['id']:<6} {item['state']:<9} {title}  [{progress}, by {author}]  {item['url']}")
    if not page["requests"]:
        click.echo("nothing waits for your review" if awaiting_me else "no requests", err=True)
    elif page.get("next_cursor"):
        click.echo(f"more: the API's next_cursor is {page['next_cursor']}", err=True)


def _progress(request_id: int, current: dict) -> str:
    """One line: the state, the approvals, what blocks it."""
    approvals = current.get("approvals") or {}
    parts = [f"promote request #{request_id}: {current['state']}"]
    if approvals.get("required"):
        parts.append(f"approvals {approvals.get('count', 0)}/{approvals['required']}")
    blocked = current.get("blocked_by_checks") or ()
    if blocked:
        parts.append("blocked by check(s) " + ", ".join(blocked))
    waiting = current.get("blocked_by_statuses") or ()
    if waiting:
        parts.append("waiting for status(es) " + ", ".join(waiting))
    if current.get("state_reason"):
        parts.append(str(current["state_reason"]))
    return " — ".join(parts)


def _review(url: str | None, request_id: int, verdict: str, comment: str) -> None:
    if comment == "-":
        comment = click.open_file("-").read()
    client = _client(url)
    done = _api(lambda: client.review(request_id, verdict, comment))
    click.echo(_progress(request_id, done))


@request.command()
@_URL
@click.argument("request_id", type=int)
@click.option("--comment", default="", help="markdown; '-' reads it from standard input")
def approve(url, request_id, comment) -> None:
    """Approve a request as yourself (with a token: one with the `review` scope); the approval that
    meets the policy applies it. Prints where the request stands then."""
    _review(url, request_id, "approve", comment)


@request.command()
@_URL
@click.argument("request_id", type=int)
@click.option("--comment", required=True, help="why (the author reads it); '-' reads it from standard input")
def reject(url, request_id, comment) -> None:
    """Reject a request as yourself, saying why."""
    _review(url, request_id, "reject", comment)


@request.command()
@_URL
@click.argument("request_id", type=int)
def show(url, request_id) -> None:
    """Print a request as JSON."""
    client = _client(url)
    click.echo(json.dumps(_api(lambda: client.get(request_id)), indent=2))


@main.group()
def status() -> None:
    """Statuses CI posts on a request or a model version (a rule's required_statuses)."""


@status.command("set")
@_CHECKPOINT_URL
@click.option("--request", "request_id", type=int, help="the promote request the status is about")
@click.option("--model", help="with --version: a model version (counts for every request promoting it)")
@click.option("--version", "version")
@click.option("--workspace", help="with --model: its MLflow workspace (default: the default one)")
@click.option("--context", required=True, help="the status's name, e.g. ci/eval")
@click.option("--state", required=True, type=click.Choice(["pending", "success", "failure", "error"]))
@click.option("--url", "target_url", default=None, help="the CI run's address (http or https)")
@click.option("--description", default="", help="one line shown beside the status")
def set_status(url, request_id, model, version, workspace, context, state, target_url, description) -> None:
    """Post a status: --request ID, or --model NAME --version V."""
    if (request_id is None) == (model is None) or (model is None) != (version is None):
        raise click.UsageError("give --request ID, or --model NAME and --version V")
    client = _client(url)
    posted = _api(
        lambda: client.set_status(
            context,
            state,
            request_id=request_id,
            model=model,
            version=version,
            workspace=workspace,
            target_url=target_url,
            description=description,
        )
    )
    about = f"request #{request_id}" if request_id is not None else f"{model} v{version}"
    click.echo(f"{posted['status']['context']} is {posted['status']['state']} on {about}")
    if "request" in posted:
        blocked = posted["request"].get("blocked_by_statuses") or []
        click.echo(
            f"request #{request_id} is {posted['request']['state']}" + (f"; waiting for {', '.join(blocked)}" if blocked else "")
        )


# `checkpoint which` exits 1 when nothing holds the target, 2 when Checkpoint has no record of that time.
WHICH_NONE_EXIT, WHICH_UNKNOWN_EXIT = 1, 2


@main.command()
@_URL
@click.argument("model")
@click.option("--stage")
@click.option("--alias")
@click.option("--workspace", help="MLflow workspace of MODEL (default: the default workspace)")
@click.option("--at", help="what held it at this ISO time (UTC unless it says otherwise), from Checkpoint's timeline")
def which(url, model, stage, alias, workspace, at) -> None:
    """Print the version of MODEL that holds a stage or alias now, or held it --at a time
    (exit 1 if none, 2 if Checkpoint has no record of that time)."""
    if bool(stage) == bool(alias):
        raise click.UsageError("give exactly one of --stage or --alias")
    client = _client(url)
    answer = _api(lambda: client.which_answer(model, stage=stage, alias=alias, workspace=workspace, at=at))
    held = "stage " + stage if stage else "alias " + alias
    if answer.get("known") is False:
        click.echo(f"unknown: {answer.get('reason')}", err=True)
        sys.exit(WHICH_UNKNOWN_EXIT)
    if answer["version"] is None:
        click.echo(
            f"no version of {model} held {held} at {answer['at']}" if at else f"no version of {model} holds {held}", err=True
        )
        sys.exit(WHICH_NONE_EXIT)
    click.echo(answer["version"])


@main.command()
@_URL
@click.argument("model")
@click.option("--workspace", help="MLflow workspace of MODEL (default: the default workspace)")
@click.option("--json", "as_json", is_flag=True, help="print the timeline as JSON")
def timeline(url, model, workspace, as_json) -> None:
    """Print what held each governed stage, alias and latest version of MODEL, from when to when."""
    client = _client(url)
    data = _api(lambda: client.timeline(model, workspace=workspace))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    if not data["targets"]:
        click.echo(f"Checkpoint has no record yet of what held any target of {model}")
    for lane in data["targets"]:
        click.echo(lane["target"])
        for p in lane["periods"]:
            version = f"v{p['version']}" if p["version"] else ("unknown" if p["how"] == "unknown" else "none")
            start, until = p["from"] or "(before the first record)", p["until"] or "now"
            by = f" #{p['request_id']} by {p['actor']}" if p["request_id"] else ""
            approved = f", approved by {', '.join(p['approvers'])}" if p["approvers"] else ""
            click.echo(f"  {version:<8} {start} → {until}  {p['how']}{by}{approved}")


@main.group()
def token() -> None:
    """Your API tokens, for pipelines (needs a real login: MLFLOW_TRACKING_USERNAME/PASSWORD, not CHECKPOINT_TOKEN)."""


@token.command("create")
@_URL
@click.option("--name", required=True, help="what will use it, e.g. 'nightly training'")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    default=("read", "request"),
    show_default=True,
    type=click.Choice(["read", "request", "status", "review", "break-glass"]),
    help="repeat for several",
)
@click.option("--expires-in-days", type=int, default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the answer as JSON")
def token_create(url, name, scopes, expires_in_days, as_json) -> None:
    """Create a token; its secret is printed once (alone on standard output, for `export CHECKPOINT_TOKEN=$(...)`)."""
    client = _client(url, login_only=True)
    made = _api(lambda: client.create_token(name, list(scopes), expires_in_days))
    if as_json:
        click.echo(json.dumps(made, indent=2))
        return
    click.echo(
        f"token #{made['id']} {made['name']!r} ({', '.join(made['scopes'])}), expires {made['expires_at']}; "
        "shown once, copy it now:",
        err=True,
    )
    click.echo(made["token"])


@token.command("list")
@_URL
@click.option("--json", "as_json", is_flag=True, help="print the tokens as JSON")
def token_list(url, as_json) -> None:
    """List your tokens (never their secrets)."""
    client = _client(url, login_only=True)
    items = _api(client.tokens)
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    for t in items:
        state = "revoked" if t["revoked_at"] else f"expires {t['expires_at']}"
        used = t["last_used_at"] or "never used"
        click.echo(f"#{t['id']:<5} {t['hint']}…  {t['name']}  [{', '.join(t['scopes'])}]  {state}  last used {used}")
    if not items:
        click.echo("you have no tokens", err=True)


@token.command("revoke")
@_URL
@click.argument("token_id", type=int)
def token_revoke(url, token_id) -> None:
    """Revoke one of your tokens: calls with it are refused from then on."""
    client = _client(url, login_only=True)
    done = _api(lambda: client.revoke_token(token_id))
    click.echo(f"token #{done['id']} {done['name']!r} revoked at {done['revoked_at']}")


@main.command()
@_URL
@click.option("-f", "--file", "path", metavar="FILE", help="the desired-state file (registry.yaml)")
@click.option("--exit-code", "detailed", is_flag=True, help="exit 2 when MLflow differs from the file (0 when not)")
@click.option("--json", "as_json", is_flag=True, help="print the plan as JSON (docs/pipelines.md)")
def plan(url, path, detailed, as_json) -> None:
    """Show what differs between a desired-state file and MLflow now, like `terraform plan`
    (exit 1 on an error; with --exit-code, 2 when there is drift)."""
    from checkpoint.review import desired

    # Every failure exits 1 here (click's usage errors would exit 2, which --exit-code means as drift).
    _, answer, shown = _planned(url, path, "plan")
    click.echo(json.dumps(answer, indent=2) if as_json else shown)
    sys.exit(desired.exit_code(answer, detailed))


def _planned(url, path, command: str):
    """The file read and checked, the client, the plan's answer and its text (plan and apply)."""
    from checkpoint.review import desired

    if not path:
        raise click.ClickException(f"give the desired-state file: checkpoint {command} -f registry.yaml")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from exc
    try:
        state = desired.load(text, path)
    except desired.DesiredError as exc:
        raise click.ClickException(f"{path} cannot be planned:\n{exc.message}") from exc
    try:
        client = _client(url)
    except click.UsageError as exc:
        raise click.ClickException(exc.message) from exc
    answer = _api(lambda: client.plan(state.document()))
    return client, answer, desired.render(answer, path, state.lines())


@main.command("apply")
@_URL
@click.option("-f", "--file", "path", metavar="FILE", help="the desired-state file (registry.yaml)")
@click.option("--title", default="", help="the request's title (default: the changes, counted, and their models)")
@click.option("--description", default=None, help="the request's description (default: the plan); '-' reads standard input")
@click.option("--wait", "wait_", is_flag=True, help="then wait for the decision, as `request wait` (and exit as it does)")
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="with --wait: seconds to wait")
@click.option("--interval", type=float, default=5.0, show_default=True, help="with --wait: seconds between polls")
def apply_file(url, path, title, description, wait_, timeout, interval) -> None:
    """Open ONE promote request holding every change the plan shows, applied all or nothing once
    approved. Run again, it finds the same open request; with no drift it opens nothing (exit 0)."""
    client, answer, shown = _planned(url, path, "apply")
    click.echo(shown)
    if answer["counts"]["error"]:
        raise click.ClickException(f"{answer['counts']['error']} target(s) could not be planned: nothing opened")
    if not answer["drift"]:
        click.echo("Nothing to apply: no request opened.")
        return
    changes = [change for entry in answer["entries"] for change in entry["changes"]]
    if description == "-":
        description = click.open_file("-").read()
    text = shown if description is None else description
    made = _api(lambda: client.batch(changes, title=title, description=text))
    verb = "Opened" if made.get("created") else "Found the open"
    click.echo(f"{verb} promote request #{made['id']} ({len(changes)} change(s), {made['state']}): {made['url']}")
    if wait_:
        _wait_for(client, made["id"], timeout, interval, quiet=False)


if __name__ == "__main__":  # pragma: no cover
    main()
