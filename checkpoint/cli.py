"""The `checkpoint` command: serve, database migrations, and the demo."""

from __future__ import annotations

import os
import sys

import click

from checkpoint.settings import Settings, SettingsError


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
@click.version_option(package_name="checkpoint-mlflow")
def main() -> None:
    """Checkpoint: pull requests for machine-learning models, in front of MLflow."""


@main.command()
@click.option("--host", default=lambda: os.environ.get("CHECKPOINT_HOST", "127.0.0.1"), show_default="127.0.0.1")
@click.option("--port", type=int, default=lambda: int(os.environ.get("CHECKPOINT_PORT", "5000")), show_default="5000")
@click.option("--workers", type=int, default=None, help="gunicorn worker processes (default: CPU count, at most 4)")
@click.option("--threads", type=int, default=None, help="threads per worker (default 32)")
def serve(host: str, port: int, workers: int | None, threads: int | None) -> None:
    """Run Checkpoint under gunicorn (migrating the database first)."""
    from checkpoint.governance import GovernanceError
    from checkpoint.policy import PolicyError
    from checkpoint.serving import serve as run

    try:
        run(_settings(), host, port, workers, threads)
    except (GovernanceError, PolicyError) as exc:
        raise click.ClickException(str(exc)) from exc


@main.group(name="db")
def db_group() -> None:
    """Database schema commands."""


@db_group.command()
def upgrade() -> None:
    """Apply every pending migration (safe to run on each deploy)."""
    from checkpoint import db

    settings = _settings()
    engine = db.make_engine(settings.database_url)
    revision = db.upgrade(engine)
    click.echo(f"database {engine.url.render_as_string(hide_password=True)} is at revision {revision}")


@db_group.command()
def current() -> None:
    """Print the schema revision the database is at, and the one this code needs."""
    from checkpoint import db

    engine = db.make_engine(_settings().database_url)
    click.echo(f"current: {db.current_revision(engine) or 'none'}  head: {db.head_revision(engine)}")


@main.command()
@click.option("--port", type=int, default=5000, show_default=True, help="Checkpoint's port")
@click.option("--mlflow-port", type=int, default=5001, show_default=True, help="the demo MLflow server's port")
@click.option("--data-dir", type=click.Path(file_okay=False), default="./checkpoint-demo", show_default=True)
@click.option("--reset", is_flag=True, help="start from an empty demo store")
def demo(port: int, mlflow_port: int, data_dir: str, reset: bool) -> None:
    """Start a seeded MLflow server with Checkpoint in front of it (Ctrl-C stops both)."""
    from checkpoint.demo import run

    sys.exit(run(port=port, mlflow_port=mlflow_port, data_dir=data_dir, reset=reset))


if __name__ == "__main__":  # pragma: no cover
    main()
