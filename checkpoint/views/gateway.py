"""The catch-all in front of everything: Checkpoint's own paths go to Flask, the rest to MLflow.

It is plain WSGI rather than a Flask view so that a proxied call pays for no routing,
request context or session it does not use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

OWN_PREFIX = "/checkpoint"


class Gateway:
    """Dispatch one WSGI call to Checkpoint's Flask app or to the proxy."""

    def __init__(self, flask_wsgi: Callable, proxy: Callable) -> None:
        self.flask_wsgi = flask_wsgi
        self.proxy = proxy

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == OWN_PREFIX or path.startswith(OWN_PREFIX + "/"):
            return self.flask_wsgi(environ, start_response)
        return self.proxy(environ, start_response)
