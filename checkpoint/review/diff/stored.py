"""Both sides' diff inputs as bytes for a diff snapshot (``review/diff_snapshots.py``): JSON,
zlib-compressed (two 2,000-param, 2,000-metric versions are ~0.6 MB of JSON, ~0.1 MB stored).

JSON, not pickle: the bytes come back from the database, and decoding them must never run code.
The inputs are kept rather than the diff, so the page judges them with the policy of now.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict
from typing import Any

from checkpoint.review.diff.types import ColumnSpec, DatasetInput, Signature, VersionInfo

FORMAT = 1  # bumped when the layout changes: an older snapshot then decodes to nothing (read again)


def encode_sides(challenger: VersionInfo, champion: VersionInfo | None) -> tuple[bytes, int]:
    """The stored bytes (one format byte, then the compressed JSON) and the JSON's size."""
    raw = json.dumps(
        {"challenger": asdict(challenger), "champion": asdict(champion) if champion else None}, separators=(",", ":")
    ).encode()
    return bytes([FORMAT]) + zlib.compress(raw, 6), len(raw)


def readable(data: bytes | None) -> bool:
    """Whether ``data`` is of this format (told without decompressing it)."""
    return bool(data) and data[0] == FORMAT  # type: ignore[index]


def decode_sides(data: bytes) -> tuple[VersionInfo, VersionInfo | None] | None:
    """The sides :func:`encode_sides` stored; None for bytes of another format or unreadable."""
    try:
        if not readable(data):
            return None
        doc = json.loads(zlib.decompress(data[1:]))
        if not isinstance(doc, dict):
            return None
        champion = doc.get("champion")
        return _info(doc["challenger"]), (_info(champion) if champion else None)
    except (ValueError, KeyError, TypeError, zlib.error):
        return None


def _info(raw: dict[str, Any]) -> VersionInfo:
    signature = raw.get("signature")
    return VersionInfo(
        **{
            **raw,
            "metric_histories": {k: [(int(s), float(v)) for s, v in points] for k, points in raw["metric_histories"].items()},
            "datasets": tuple(DatasetInput(**d) for d in raw["datasets"]),
            "signature": _signature(signature) if signature else None,
            "flavors": tuple(raw["flavors"]),
            "problems": list(raw["problems"]),
        }
    )


def _signature(raw: dict[str, Any]) -> Signature:
    return Signature(**{part: tuple(ColumnSpec(**c) for c in raw.get(part) or ()) for part in ("inputs", "outputs", "params")})
