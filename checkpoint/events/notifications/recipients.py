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
"""

from __future__ import annotations

from dataclasses import dataclass

from checkpoint.events.notifications.people import People
from checkpoint.identity import User
from checkpoint.review import batches, mentions
from checkpoint.review.policy import Policy
from checkpoint.storage.entities import EventKind, PromoteRequest
from checkpoint.storage.mail import Happening, Recipient

AWAITED, AUTHOR, MENTIONED = "awaited", "author", "mentioned"
REASONS = (AWAITED, AUTHOR, MENTIONED)
# The events the author hears about.
TO_AUTHOR = frozenset({EventKind.APPROVED, EventKind.REJECTED, EventKind.APPLIED, EventKind.APPLY_FAILED, EventKind.COMMENTED})


@dataclass(frozen=True)
class Recipients:
    policy: Policy
    people: People

    def __call__(self, happening: Happening) -> list[Recipient]:
        request = happening.request
        if request is None:  # outside changes and the log's own events are the webhooks' business
            return []
        found: list[Recipient] = []

        def add(names: tuple[str, ...] | list[str], reason: str) -> None:
            for name in self.people.expand(names):
                if name and name != happening.actor:
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
