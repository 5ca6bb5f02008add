"""Who may approve what, and how many approvals a request needs.

For now one rule for every request: ``required_approvals`` approvals from people other
than the author (``CHECKPOINT_REQUIRED_APPROVALS``, default 1; the author may approve
only with ``CHECKPOINT_ALLOW_SELF_APPROVAL=true``). Per-model rules, reviewer groups and
break-glass build on this.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


class PolicyError(ValueError):
    pass


@dataclass(frozen=True)
class Policy:
    required_approvals: int = 1
    allow_self_approval: bool = False

    def may_review(self, user: str, author: str) -> str | None:
        """Why ``user`` may not review a request by ``author``, or None."""
        if user == author and not self.allow_self_approval:
            return f"{user} opened this request and the policy does not allow approving your own request"
        return None

    def satisfied(self, approvers: set[str]) -> bool:
        return len(approvers) >= self.required_approvals

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Policy:
        env = os.environ if env is None else env
        raw = env.get("CHECKPOINT_REQUIRED_APPROVALS", "1").strip()
        if not raw.isdigit() or not 1 <= int(raw) <= 20:
            raise PolicyError(f"CHECKPOINT_REQUIRED_APPROVALS={raw!r}: expected a whole number from 1 to 20")
        flag = env.get("CHECKPOINT_ALLOW_SELF_APPROVAL", "false").strip().lower()
        if flag not in ("true", "false", "1", "0", "yes", "no"):
            raise PolicyError(f"CHECKPOINT_ALLOW_SELF_APPROVAL={flag!r}: expected true or false")
        return cls(required_approvals=int(raw), allow_self_approval=flag in ("true", "1", "yes"))
