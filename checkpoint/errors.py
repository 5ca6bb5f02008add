"""One error base for everything a caller should see, free of any web framework.

Every error Checkpoint answers derives from :class:`CheckpointError`: its HTTP status, an
MLflow-style ``error_code`` and a message, plus ``extra`` fields for the JSON body. Two
renderers turn it into an answer: ``web/errors.py`` (Flask: JSON for programs, a page for
people) and ``edge/gateway.py`` (plain WSGI, MLflow's JSON shape). Domain modules raise their
own subclasses (``WorkflowError``, ``ChangeError``, ``RegistryError``, ``NotFound``,
``DeliveryBusy``) without knowing how they are answered.
"""

from __future__ import annotations


class CheckpointError(Exception):
    """An error a caller should see, with its HTTP status and MLflow-style error code."""

    def __init__(self, status: int, error_code: str, message: str, **extra) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.extra = extra

    def payload(self) -> dict:
        return {"error_code": self.error_code, "message": self.message, **self.extra}

    def answer(self) -> CheckpointError:
        """This error as Checkpoint's own API and pages answer it: itself, unless it reports
        someone else's refusal (``RegistryError`` carries MLflow's status, not ours)."""
        return self


class ConfigError(CheckpointError, ValueError):
    """A configuration value is missing or malformed: a ``CHECKPOINT_*`` variable, or a key of the
    policy file named by its path (``rules[0] (fraud production).checks[0] (auc-gate).expression``).

    Start-up stops with the message, which shows a good value; a ValueError too, as the four
    errors it replaces were (``SettingsError``, ``IdentityError``, ``GovernanceError``, ``PolicyError``).
    """

    def __init__(self, message: str) -> None:
        super().__init__(500, "INTERNAL_ERROR", message)
