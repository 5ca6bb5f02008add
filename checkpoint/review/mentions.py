"""``@name`` mentions in a description or comment: who a text asks to look.

A mention starts a word (``bob@example.com`` mentions nobody) and ends before trailing
punctuation (``thanks @bob.`` mentions bob). Names are Checkpoint's user names, so a group's
name mentions the group (the notifications expand it through the policy's ``groups:``).
"""

from __future__ import annotations

import re

_MENTION = re.compile(r"(?<![\w@.+-])@([A-Za-z0-9][A-Za-z0-9._-]{0,255})")


def mentioned(text: str | None) -> tuple[str, ...]:
    """The names ``text`` mentions, in order, each once."""
    names = (m.group(1).rstrip("._-") for m in _MENTION.finditer(text or ""))
    return tuple(dict.fromkeys(n for n in names if n))


def newly_mentioned(before: str | None, after: str | None) -> tuple[str, ...]:
    """The names ``after`` mentions that ``before`` did not (an edit's new mentions)."""
    old = set(mentioned(before))
    return tuple(n for n in mentioned(after) if n not in old)
