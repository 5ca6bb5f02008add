"""Rendered diffs kept per process: the request page's diff of two 2,000-param, 2,000-metric
versions is ~4,000 table rows, and rendering them costs more than the rest of the page.

A fragment is named by everything it shows: the stored snapshot it was rendered from
(request, key, time: ``review/diff_snapshots.py``) and the page's lines about it (moved,
refreshing, a note), so a new snapshot or a new line is a new name and is rendered afresh.
Bounded in bytes; the least recently used goes first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from markupsafe import Markup

MAX_BYTES = 16 * 1024 * 1024  # per process; the wide bench diff renders to ~1.2 MB


class Fragments:
    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._kept: OrderedDict[Hashable, Markup] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, name: Hashable | None, render: Callable[[], str]) -> Markup:
        """The fragment named ``name``, rendered now if not kept (never kept when ``name`` is None)."""
        if name is not None:
            with self._lock:
                found = self._kept.get(name)
                if found is not None:
                    self._kept.move_to_end(name)
                    return found
        fragment = Markup(render())  # noqa: S704 - our template's own output, escaped as it rendered
        if name is not None and len(fragment) <= self.max_bytes:
            with self._lock:
                if name not in self._kept:
                    self._kept[name] = fragment
                    self._size += len(fragment)
                while self._size > self.max_bytes:
                    _, dropped = self._kept.popitem(last=False)
                    self._size -= len(dropped)
        return fragment
