"""Who is emailed about an event: the Store's recipients hook (``storage/mail.py``).

- ``opened``: the reviewers it awaits, i.e. those the author named and those the rule in force
  lists (its ``reviewers``, and its ``groups`` expanded through the policy's ``groups:``). A rule
  that lists nobody (anyone with the right may approve) awaits no one by name: nobody is emailed
  for it but the named reviewers.
- ``approved``, ``rejected``, ``applied``, ``apply_failed``, ``commented``: the author.
- anyone ``@mentioned`` (a group mentions its members) in the description when it opens, a
  comment, a review's comment, or an edit's new text (``edited``'s ``mentioned``).

Nobody is emailed about what they did themselves. Reasons, in the order a person's first one
wins: ``awaited``, ``author``, ``mentioned``.

An email carries the request's content (its title, model, comments). In ``mlflow`` identity
mode, where MLflow decides who may read a model, nobody is emailed about a model MLflow does not
let them read (``may_read``): an @mention or a named reviewer is not a way to show it to them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from checkpoint.events.notifications.people import People
from checkpoint.review import mentions, visibility
from checkpoint.review.policy import Policy
from checkpoint.storage.entities import EventKind
from checkpoint.storage.mail import Happening, Recipient

AWAITED, AUTHOR, MENTIONED = "awaited", "author", "mentioned"
REASONS = (AWAITED, AUTHOR, MENTIONED)
# The events the author hears about.
TO_AUTHOR = frozenset({EventKind.APPROVED, EventKind.REJECTED, EventKind.APPLIED, EventKind.APPLY_FAILED, EventKind.COMMENTED})


# (user name, model, MLflow workspace) -> whether MLflow lets that user read the model.
MayRead = Callable[[str, str, str], bool]


@dataclass(frozen=True)
class Recipients:
    policy: Policy
    people: People
    may_read: MayRead | None = None  # mlflow mode: only people who may read the model hear of it

    def __call__(self, happening: Happening) -> list[Recipient]:
        request = happening.request
        if request is None:  # outside changes and the log's own events are the webhooks' business
            return []
        found: list[Recipient] = []

        def add(names: tuple[str, ...] | list[str], reason: str) -> None:
            for name in self.people.expand(names):
                if name and name != happening.actor and self._may_read(name, request):
                    found.append(Recipient(name, self.people.address(name), reason))

        kind, data = happening.kind, happening.data
        if kind == EventKind.OPENED:
            rule = self.policy.rule_for(request.model_name, request.target, request.workspace)
            awaited = [*request.named_reviewers, *rule.reviewers, *rule.groups]
            add([n for n in self.people.expand(awaited) if n != request.author], AWAITED)
            add(mentions.mentioned(request.description), MENTIONED)
        if kind in TO_AUTHOR:
            add([request.author], AUTHOR)
        if kind == EventKind.COMMENTED:
            add(mentions.mentioned(happening.comment), MENTIONED)
        if kind in (EventKind.REVIEW_APPROVED, EventKind.REVIEW_REJECTED):
            add(mentions.mentioned(str(data.get("comment") or "")), MENTIONED)
        if kind == EventKind.EDITED and isinstance(data.get("mentioned"), list):
            add([str(n) for n in data["mentioned"]], MENTIONED)
        return found

    def _may_read(self, name: str, request) -> bool:
        """Whether ``name`` may read every model the request touches (its own, a copy's source)."""
        if self.may_read is None:
            return True
        workspace = getattr(request, "workspace", "") or ""
        return all(self.may_read(name, model, workspace) for model in visibility.change_models(request))
