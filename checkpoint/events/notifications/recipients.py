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
from checkpoint.identity import User
from checkpoint.review import batches, changes, mentions, visibility
from checkpoint.review.policy import Policy
from checkpoint.storage.entities import EventKind, PromoteRequest
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
            add([n for n in self._awaited(request) if n != request.author], AWAITED)
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
        """Whether ``name`` may read every model the request touches: each change's model and a
        copy's source, in that change's workspace (a batch's later changes leak like its first)."""
        if self.may_read is None:
            return True
        return all(self.may_read(name, model, workspace) for workspace, model in _places(request))

    def _awaited(self, request: PromoteRequest) -> list[str]:
        """Those the request awaits by name: named by its author or listed by its rule. A batch:
        anyone a change's rule lists, kept only if every change's rule lets them approve (one a
        later change's rule refuses is not asked to review what they cannot approve)."""
        parts = batches.parts(request)
        listed = [*request.named_reviewers]
        for part in parts:
            rule = self.policy.rule_for(part.model_name, part.target, part.workspace)
            listed += [*rule.reviewers, *rule.groups]
        people = self.people.expand(listed)
        if len(parts) == 1:
            return list(people)
        may = self.policy.may_review
        return [
            n
            for n in people
            if all(
                may(User(n, groups=self.people.groups_of(n)), request.author, p.model_name, p.target, workspace=p.workspace)
                is None
                for p in parts
            )
        ]


def _places(request: PromoteRequest) -> set[tuple[str, str]]:
    """Every (workspace, model) a stored request touches, across its changes."""
    found: set[tuple[str, str]] = set()
    for part in batches.parts(request):
        workspace = getattr(part, "workspace", "") or ""
        try:
            models = visibility.change_models(changes.from_json(part.change))
        except (ValueError, TypeError, KeyError):  # a row no kind reads still names its model
            models = (part.model_name,)
        found.update((workspace, model) for model in (part.model_name, *models))
    return found
