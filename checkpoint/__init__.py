"""Checkpoint: pull requests for machine-learning models, in front of MLflow.

``create_app()`` is the only entry point a server needs::

    gunicorn 'checkpoint:create_app()'
"""

from __future__ import annotations

from checkpoint.app import create_app

__all__ = ["create_app"]
__version__ = "0.1.0"
