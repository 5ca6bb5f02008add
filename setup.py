"""Packaging for Checkpoint: everything the server needs lives inside the ``checkpoint``
package (migrations under ``storage/``, templates and static files under ``web/``)."""

from setuptools import find_packages, setup

setup(
    name="checkpoint-mlflow",
    version="0.1.0",
    description="Pull requests for machine-learning models: a governing proxy for MLflow",
    python_requires=">=3.11",
    packages=find_packages(include=["checkpoint", "checkpoint.*"]),
    package_data={
        "checkpoint": ["openapi.yaml"],
        "checkpoint.storage.migrations": ["script.py.mako"],
        "checkpoint.web": ["templates/*.html", "templates/*/*.html", "static/*", "static/*/*"],
        "checkpoint.events.notifications": ["templates/*"],
    },
    install_requires=[
        "flask>=3.0,<4",
        "sqlalchemy>=2.0,<3",
        "alembic>=1.13,<2",
        "gunicorn>=23,<27",  # serving.ProxyWorker extends gunicorn 26's gthread worker
        "urllib3>=2.2,<3",
        "httptools>=0.6,<1",  # edge/lean.py: MLflow's answer heads parsed in C (llhttp)
        "requests>=2.31,<3",
        "pyyaml>=6",
        "markdown-it-py>=3,<5",
        "nh3>=0.2.15",
        "flask-wtf>=1.2,<2",
        "prometheus-client>=0.20,<1",  # /checkpoint/metrics, multi-process mode under gunicorn
        "python-dateutil>=2.8,<3",  # review/freezes.py: the weekly recurrence of a freeze window (rrule)
        "tzdata>=2024.1",  # zone files for zoneinfo where the system has none (slim containers)
        "packaging>=23",  # runtime/envs.py: a model's requirement lines read as PEP 508 requirements
    ],
    extras_require={
        "postgres": ["psycopg[binary]>=3.1,<4"],
        # The demo runs a real MLflow server and trains small sklearn models.
        "demo": ["mlflow>=3.17,<3.18", "scikit-learn>=1.4"],
        # CHECKPOINT_EVALUATOR_ENV=uv: models run in their own environments, built by uv (runtime/envs.py).
        "envs": ["uv>=0.9,<1"],
    },
    entry_points={"console_scripts": ["checkpoint=checkpoint.cli:main"]},
)
