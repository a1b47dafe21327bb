"""The one seam for search: the :class:`Gallery` protocol, :func:`open_gallery`, and the checks every gallery shares
(entry validation, filter arguments, embeddings, capture times).

Two galleries implement the protocol: the LanceDB store (:class:`cmft.search.store.GalleryStore`, a folder or an
object-storage URI) and Milvus (:class:`cmft.search.milvus.MilvusGallery`, a server or a Milvus Lite file). The old
folder formats (``cmft-gallery-index/1``, ``cmft-gallery-store/2``) are only read, to migrate them
(:mod:`cmft.search.legacy`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, time, timezone
from typing import Any, Protocol, runtime_checkable

import numpy as np

MODALITIES = ("rgb", "ir")
KINDS = ("flat", "ivf")  # exact, approximate ("hnsw", the old name, means "ivf")
MAX_INT = (1 << 53) - 1  # cameras, identities and ids stay integers that JSON and JavaScript keep exactly

Hook = Callable[[list[int], list[dict]], None]


class IndexFormatError(ValueError):
    """A missing or malformed gallery, an embedding of the wrong width, a bad entry or a bad filter value.

    The message names the file (or the entry key / argument) and the problem."""


class GalleryDamagedError(IndexFormatError):
    """A stored entry or vector that fails its checksum, or a file of the gallery that cannot be read."""


# -- small checks -----------------------------------------------------------------------------------------------
def is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def check_kind(kind: str) -> str:
    """``"flat"`` or ``"ivf"`` (``"hnsw"``, the old name of the approximate kind, is read as ``"ivf"``)."""
    kind = "ivf" if kind == "hnsw" else kind
    if kind not in KINDS:
        raise IndexFormatError(f"unknown index kind {kind!r}; choose 'flat' (exact) or 'ivf' (approximate)")
    return kind


def check_entry(e: Any, where: str) -> dict:
    """A validated, JSON-clean copy of one entry dict (``id`` is never stored in it)."""
    if not isinstance(e, dict):
        raise IndexFormatError(f"{where}: an entry must be a JSON object, got {type(e).__name__}")
    e = {k: v for k, v in e.items() if k != "id"}
    key = e.get("key")
    if not isinstance(key, str) or not key:
        raise IndexFormatError(f"{where}: 'key' must be a non-empty string, got {key!r}")
    where = f"{where} (key {key!r})"
    problems = []
    if not is_int(e.get("camera")):
        problems.append(f"'camera' must be an integer, got {e.get('camera')!r}")
    elif not -MAX_INT <= e["camera"] <= MAX_INT:
        problems.append(f"'camera' {e['camera']} is out of range (|camera| <= 2^53 - 1)")
    if e.get("modality") not in MODALITIES:
        problems.append(f"'modality' must be 'rgb' or 'ir', got {e.get('modality')!r}")
    if e.get("pid") is not None and not is_int(e.get("pid")):
        problems.append(f"'pid' must be an integer or null, got {e.get('pid')!r}")
    elif e.get("pid") is not None and not -MAX_INT <= e["pid"] <= MAX_INT:
        problems.append(f"'pid' {e['pid']} is out of range (|pid| <= 2^53 - 1)")
    for name in ("time", "thumbnail"):
        if e.get(name) is not None and not isinstance(e.get(name), str):
            problems.append(f"{name!r} must be a string or null, got {e.get(name)!r}")
    if not isinstance(e.get("source"), str):
        problems.append(f"'source' must be a string, got {e.get('source')!r}")
    frames = e.get("frames")
    if not isinstance(frames, list) or not all(isinstance(f, str) for f in frames):
        problems.append("'frames' must be a list of strings")
    if problems:
        raise IndexFormatError(f"{where}: " + "; ".join(problems))
    e["camera"] = int(e["camera"])
    e.setdefault("pid", None)
    e.setdefault("time", None)
    e.setdefault("thumbnail", None)
    if e["pid"] is not None:
        e["pid"] = int(e["pid"])
    try:
        return json.loads(json.dumps(e, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise IndexFormatError(f"{where}: not JSON-serialisable ({err})") from None


def check_filters(modality: str | None, cameras: Sequence[int] | None, exclude: Sequence[int] | None) -> None:
    """Refuse a malformed search filter (the same rules for every gallery)."""
    if modality is not None and modality not in MODALITIES:
        raise IndexFormatError(f"modality filter must be 'rgb' or 'ir', got {modality!r}")
    if cameras is not None and (isinstance(cameras, (str, bytes)) or not all(is_int(c) for c in cameras)):
        raise IndexFormatError(f"cameras filter must be a list of integers, got {cameras!r}")
    if cameras is not None and any(not -MAX_INT <= c <= MAX_INT for c in cameras):
        raise IndexFormatError(f"cameras filter: a camera is out of range (|camera| <= 2^53 - 1), got {list(cameras)[:5]!r}")
    if exclude is not None and (isinstance(exclude, (str, bytes)) or not all(is_int(i) for i in exclude)):
        raise IndexFormatError(f"exclude must be a list of entry ids, got {exclude!r}")
    if exclude is not None and any(not 0 <= i < 1 << 63 for i in exclude):
        raise IndexFormatError(f"exclude: an entry id is out of range (0..2^63 - 1), got {list(exclude)[:5]!r}")


def check_k(k: Any) -> int:
    if not is_int(k) or k < 1:
        raise IndexFormatError(f"k must be a positive integer, got {k!r}")
    return int(k)


def normalise(x: np.ndarray, dim: int, what: str) -> np.ndarray:
    """``[N, dim]`` float32 rows of unit length (a 1-D vector is one row); refuses NaN, inf and zero rows."""
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != dim:
        raise IndexFormatError(f"{what}: expected shape [N, {dim}] (the index's dim), got {list(x.shape)}")
    if x.dtype.kind not in "fiu":
        raise IndexFormatError(f"{what}: expected a float array, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=True)
    if not np.isfinite(x).all():
        raise IndexFormatError(f"{what}: contains NaN or infinite values")
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64)).astype(np.float32)
    if (norms == 0).any():
        raise IndexFormatError(f"{what}: row(s) {np.flatnonzero(norms == 0)[:5].tolist()} are all zeros")
    if not np.isfinite(norms).all():
        raise IndexFormatError(f"{what}: contains NaN or infinite values")
    # rows already of unit length (the extractor's output) are kept bit for bit
    x /= np.where(np.abs(norms - 1) > 1e-6, norms, np.float32(1))[:, None]  # x / 1 == x exactly
    return x


def key_id(key: str, salt: int = 0) -> int:
    """The entry id of a key in a LanceDB store: 2^52 plus 52 bits of its SHA-256 (``salt`` > 0 after a collision).

    Ids come from keys, so concurrent writers never hand out the same id to two entries and the same key gets the
    same id whatever the order of the adds; they stay below 2^53 (exact in JSON and JavaScript) and above the
    0..N-1 ids of galleries migrated from the old formats."""
    text = key if salt == 0 else f"{key}\x00{salt}"
    return (1 << 52) | (int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 12)


# -- capture times ----------------------------------------------------------------------------------------------
def _is_date_only(text: str) -> bool:
    with contextlib.suppress(ValueError):
        date.fromisoformat(text)
        return True
    return False


def parse_time(value: Any, what: str = "time", end_of_day: bool = False) -> float | None:
    """Seconds since the epoch (UTC) of an ISO 8601 string (``2026-11-30T21:05:00+01:00``, ``2026-11-30``; no zone
    means UTC), a :class:`datetime` / :class:`date`, or a number of seconds; None stays None.

    A date alone means its first instant, or with ``end_of_day`` its last one (``--until 2026-11-30`` keeps that
    whole day)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise IndexFormatError(f"{what}: expected an ISO 8601 time, got {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        if not math.isfinite(float(value)):
            raise IndexFormatError(f"{what}: not a finite time: {value!r}")
        return float(value)
    day_only = False
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt, day_only = datetime(value.year, value.month, value.day), True
    elif isinstance(value, str):
        text = value.strip()
        try:
            dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise IndexFormatError(f"{what}: {value!r} is not an ISO 8601 time (e.g. 2026-11-30T21:05:00Z)") from None
        day_only = _is_date_only(text)
    else:
        raise IndexFormatError(f"{what}: expected an ISO 8601 time, got {type(value).__name__}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    if day_only and end_of_day:
        dt = datetime.combine(dt.date(), time.max, tzinfo=dt.tzinfo)
    return dt.timestamp()


def time_range(since: Any, until: Any) -> tuple[float | None, float | None]:
    """``(lo, hi)`` in epoch seconds, both inclusive; ``until`` given as a date alone means the end of that day."""
    return parse_time(since, "since"), parse_time(until, "until", end_of_day=True)


def capture_time(entry: dict) -> float | None:
    """An entry's capture time in epoch seconds: its ``captured`` field (ISO 8601), else ``time`` when that is
    an ISO 8601 time (a ``cmft track`` export's ``video#frame`` is not), else None."""
    if entry.get("captured") is not None:
        return parse_time(entry["captured"], f"entry {entry.get('key')!r}: 'captured'")
    t = entry.get("time")
    if isinstance(t, str) and t[:1].isdigit():
        with contextlib.suppress(IndexFormatError):
            return parse_time(t)
    return None


# -- the protocol -----------------------------------------------------------------------------------------------
@runtime_checkable
class Gallery(Protocol):
    """What ``cmft index / search / prune / serve`` use of a gallery; every id is an ``int`` below 2^53 (Milvus:
    2^63), every entry a dict with ``id``, ``key``, ``camera``, ``modality``, ``pid``, ``time``, ``source``,
    ``frames``, ``thumbnail`` and any extra JSON fields."""

    path: Any  # where thumbnails live
    dim: int
    kind: str
    meta: dict
    readonly: bool

    def __len__(self) -> int: ...
    def refresh(self) -> bool: ...
    def view(self) -> Gallery: ...
    def entry(self, id: int) -> dict: ...
    def by_ids(self, ids: Sequence[int]) -> list[dict]: ...
    def iter_entries(self, batch: int = ...) -> Iterator[dict]: ...
    def entries(self) -> list[dict]: ...
    def page(self, offset: int = 0, limit: int = 50, modality: str | None = None, camera: int | None = None,
             pid: int | None = None) -> tuple[int, list[dict]]: ...
    def summary(self) -> dict[str, Any]: ...
    def counts(self) -> list[tuple[str, int, int]]: ...
    def find(self, key: str) -> int | None: ...
    def count_prefix(self, prefix: str) -> int: ...
    def find_suffix(self, tail: str, limit: int = 4) -> list[int]: ...
    def ids_where(self, pid: int, camera: int) -> list[int]: ...
    def embedding(self, id: int) -> np.ndarray: ...
    def search(self, queries: np.ndarray, k: int = 10, modality: str | None = None, cameras: Sequence[int] | None = None,
               exclude: Sequence[int] | None = None, since: Any = None, until: Any = None,
               exact: bool = False) -> list[list[tuple[int, float]]]: ...
    def add(self, embeddings: np.ndarray, entries: list[dict], hook: Hook | None = None) -> list[int]: ...
    def delete(self, ids: Sequence[int] = (), keys: Sequence[str] = (), before: Any = None) -> int: ...
    def needs_compaction(self) -> bool: ...
    def compact(self, progress: Callable[[str], None] | None = None) -> None: ...
    def close(self) -> None: ...


def is_milvus(spec: str | os.PathLike[str]) -> bool:
    """True for a Milvus server URI (``http://``, ``https://``, ``milvus://``) or a Milvus Lite file (``*.db``)."""
    text = str(spec)
    return text.startswith(("http://", "https://", "milvus://", "tcp://")) or text.endswith(".db")


def open_gallery(spec: str | os.PathLike[str], readonly: bool = False) -> Gallery:
    """The gallery at ``spec``: a Milvus URI or Milvus Lite file (:class:`~cmft.search.milvus.MilvusGallery`), else a
    LanceDB store (a folder or an object-storage URI, :func:`~cmft.search.store.open_store`, which migrates a folder
    of an old format unless ``readonly``)."""
    if is_milvus(spec):
        from cmft.search.milvus import MilvusGallery

        gallery = MilvusGallery(str(spec), readonly=readonly)
        gallery._exists()
        return gallery
    from cmft.search.store import open_store

    return open_store(spec, readonly=readonly)


__all__ = ["Gallery", "GalleryDamagedError", "Hook", "IndexFormatError", "KINDS", "MODALITIES", "capture_time", "check_entry", "check_filters",
           "check_k", "check_kind", "is_int", "is_milvus", "key_id", "normalise", "open_gallery", "parse_time", "time_range"]
