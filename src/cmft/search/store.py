"""The gallery store: tracklet embeddings and their entries in one LanceDB table, for archives of millions of
tracklets, searched and extended by any number of processes at once.

A store is a folder (or an object-storage URI LanceDB understands) holding the table ``gallery.lance`` and
``thumbs/`` (one JPEG per entry, written by :mod:`cmft.search.indexing`). The table is the one source of truth: per
entry its ``id``, ``key`` (the table's primary key), the filter columns (``camera``, ``modality``, ``pid``, capture
time ``t``, ``dataset``), the whole entry as JSON, a CRC-32 of the vector and the entry, and the L2-normalised
float32 ``vector``. The store's header (format, width, kind, the model's meta) is the table schema's metadata, so
it commits with the table's creation.

What LanceDB gives and the store relies on:

* every write (add, delete, optimize) commits a new version atomically (a process killed at any moment leaves the
  old version or the new one), and concurrent writers retry on conflict;
* an add is a merge-insert on ``key`` with the key marked as the primary key, so two writers adding the same key at
  once leave one row;
* a reader is pinned to a version (:meth:`GalleryStore.view`): a request that reads an entry, its embedding and
  the ranking sees one version, whatever is committed meanwhile; an unpinned store looks for the latest version at
  each search;
* filters are scalar prefilters (indexed by :meth:`GalleryStore.compact`), applied before the top-k is taken.

Ids come from keys (:func:`~cmft.search.gallery.key_id`): no counter to share between writers, the same id for a key
whatever the order of the adds. Search is exact when few entries pass the filters (``EXACT_BELOW``) or the store
is exact (``kind="flat"``), else an IVF-PQ index whose probes grow as the filter narrows (``PROBE``), re-ranked on the full
vectors; scores are recomputed from the stored vectors, so exact and approximate answers agree on a score.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from cmft.search.gallery import (
    MODALITIES,
    GalleryDamagedError,
    Hook,
    IndexFormatError,
    capture_time,
    check_entry,
    check_filters,
    check_k,
    check_kind,
    is_int,
    key_id,
    normalise,
    parse_time,
    time_range,
)

FORMAT = "cmft-gallery-lance/3"
TABLE = "gallery"
TABLE_DIR = f"{TABLE}.lance"
THUMBS = "thumbs"
IVF_MIN_ROWS = 20_000  # an approximate store is searched exactly until it holds this many entries
EXACT_BELOW = 4096  # fewer entries than this pass the filters: score them all exactly (bypass the index)
PROBE = 3.0  # an unfiltered search probes PROBE * sqrt(nlist) of the nlist IVF partitions, 1/sqrt(share) more under a filter
REFINE = 10  # candidates re-ranked on the full vectors per result
FETCH_EXTRA = 16  # results fetched beyond k, so ties and rounding at the cut are settled on our own scores
CACHE_ROWS = 300_000  # exact scans of more passing entries than EXACT_BELOW go through an in-memory copy of a
# version's vectors up to this many rows (2.4 GB at 2,048-d); LanceDB's own flat scan reads ~0.5 GB/s
GRACE = timedelta(minutes=10)
CLOCK_SLACK = 60.0  # on object storage (writers on several machines, several clocks): rows added less than this
# before an optimize began are scanned beside the index anyway
INDEXED_BEFORE = "cmft:indexed_before"  # metadata of the ``added`` field: rows added before this are in the index  # old versions and unreferenced thumbnails younger than this are kept (pinned readers)
RETRIES = 20  # commit attempts of one write under conflicts with other writers
_HEADER = b"cmft"


def is_store(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder holding a LanceDB gallery store with a committed version (a creation killed
    before its first commit leaves none: the next ``cmft index`` creates it again)."""
    versions = Path(path) / TABLE_DIR / "_versions"
    return _is_uri(path) or (versions.is_dir() and any(p.suffix == ".manifest" for p in versions.iterdir()))


def _is_uri(path: Any) -> bool:
    return "://" in str(path) and not str(path).startswith("file://")


def _schema(dim: int, header: dict[str, Any]) -> Any:
    import pyarrow as pa

    return pa.schema([
        pa.field("id", pa.int64(), nullable=False),
        pa.field("key", pa.string(), nullable=False, metadata={"lance-schema:unenforced-primary-key": "true"}),
        pa.field("camera", pa.int64(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("pid", pa.int64()),
        pa.field("t", pa.float64()),
        pa.field("dataset", pa.string()),
        pa.field("doc", pa.string(), nullable=False),
        pa.field("crc", pa.uint32(), nullable=False),
        pa.field("added", pa.float64(), nullable=False),
        pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
    ], metadata={_HEADER: json.dumps(header).encode()})


def _crc(vec: np.ndarray, doc: str) -> int:
    return zlib.crc32(doc.encode("utf-8"), zlib.crc32(np.ascontiguousarray(vec, np.float32).tobytes()))


def _sql(value: Any) -> str:
    """A SQL literal for the filter expressions (integers and strings only; strings quoted with '' escaping)."""
    if is_int(value):
        return str(int(value))
    return "'" + str(value).replace("'", "''") + "'"


def _in(column: str, values: Sequence[Any]) -> str:
    return f"{column} IN ({', '.join(_sql(v) for v in values)})"


def _lance_error(where: Any, e: BaseException) -> IndexFormatError:
    return GalleryDamagedError(f"{where}: cannot read the gallery store ({str(e).splitlines()[0][:400] if str(e) else type(e).__name__})")


class GalleryStore:
    """A LanceDB gallery store opened for reading (and writing unless ``readonly``); see the module docstring.

    ``version`` pins the store to one committed version (what :meth:`view` returns); ``len(store)`` counts
    entries."""

    def __init__(self, path: str | os.PathLike[str], readonly: bool = False, version: int | None = None) -> None:
        lancedb = _lancedb()

        self.path = path if _is_uri(path) else Path(path)
        self.readonly = readonly or version is not None
        self._pinned = version is not None
        if not _is_uri(path) and not (Path(path) / TABLE_DIR).is_dir():
            raise IndexFormatError(f"{path}: no gallery store ({TABLE_DIR} missing; build one with `cmft index`)")
        if not _is_uri(path) and not is_store(path):
            raise GalleryDamagedError(f"{path}/{TABLE_DIR}: cannot read the gallery store (no committed version)")
        try:
            self._db = lancedb.connect(str(path))
            self._tbl = self._db.open_table(TABLE, version=version) if version is not None else self._db.open_table(TABLE)
            schema = self._tbl.schema
        except Exception as e:  # noqa: BLE001 - lance raises OSError, ValueError, RuntimeError for damaged files
            raise _lance_error(Path(str(path)) / TABLE_DIR, e) from None
        raw = (schema.metadata or {}).get(_HEADER)
        try:
            head = json.loads(raw) if raw else {}
        except (ValueError, UnicodeDecodeError):
            head = {}
        if head.get("format") != FORMAT:
            raise IndexFormatError(f"{self._label}: format {head.get('format')!r} is not {FORMAT!r}")
        try:
            self.dim, self.kind, self.meta = int(head["dim"]), check_kind(str(head["kind"])), dict(head.get("meta") or {})
        except (KeyError, TypeError, ValueError) as e:
            raise IndexFormatError(f"{self._label}: malformed header ({e})") from None
        self._cache: dict[tuple[int, str], Any] = {}

    @property
    def _label(self) -> str:
        return f"{self.path}/{TABLE_DIR}" if not _is_uri(self.path) else str(self.path)

    # -- creation -------------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], dim: int, kind: str = "flat", meta: dict | None = None,
               exist_ok: bool = False) -> GalleryStore:
        """A new empty store at ``path`` (a folder is created). ``kind``: "flat" (exact) or "ivf" (approximate above
        ``IVF_MIN_ROWS`` entries). With ``exist_ok`` a store created meanwhile by another process is opened instead
        (two ``cmft index`` runs starting a store at once both go on); the caller checks it fits."""
        lancedb = _lancedb()
        kind = check_kind(kind)
        if not is_int(dim) or dim < 1:
            raise IndexFormatError(f"dim must be a positive integer, got {dim!r}")
        if not _is_uri(path):
            Path(path).mkdir(parents=True, exist_ok=True)
        if is_store(path) and not _is_uri(path) and not exist_ok:
            raise IndexFormatError(f"{path}: already holds a gallery store")
        header = {"format": FORMAT, "dim": int(dim), "kind": kind, "meta": json.loads(json.dumps(meta or {}))}
        db = lancedb.connect(str(path))
        for attempt in range(RETRIES):
            try:
                db.create_table(TABLE, schema=_schema(int(dim), header), exist_ok=exist_ok)
                break
            except Exception as e:  # noqa: BLE001 - a concurrent creator: lance says the table exists
                if not exist_ok:
                    if "exist" in str(e).lower():
                        raise IndexFormatError(f"{path}: already holds a gallery store") from None
                    raise _lance_error(path, e) from None
                time.sleep(0.01 * (attempt + 1))
        return cls(path)

    # -- versions -------------------------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        """The committed version this handle reads."""
        return int(self._tbl.version)

    def refresh(self) -> bool:
        """Move to the latest committed version (new entries, deletions, an optimize); True if it changed. A pinned
        view never moves."""
        if self._pinned:
            return False
        try:
            latest = self._db.open_table(TABLE)
        except Exception as e:  # noqa: BLE001
            raise _lance_error(self._label, e) from None
        changed = latest.version != self._tbl.version
        self._tbl = latest
        return changed

    def view(self) -> GalleryStore:
        """A read-only handle pinned to the latest committed version: every read through it sees that version."""
        self.refresh()
        v = GalleryStore.__new__(GalleryStore)
        v.__dict__.update(self.__dict__)
        v.readonly, v._pinned, v._cache = True, True, self._cache
        return v

    def _read(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(table)`` on this handle's version, with lance's errors turned into one naming the store."""
        tbl = self._tbl
        try:
            return fn(tbl)
        except IndexFormatError:
            raise
        except Exception as e:  # noqa: BLE001 - lance / arrow errors on damaged or vanished files
            raise _lance_error(self._label, e) from None

    def _rows(self, where: str | None, columns: list[str], limit: int | None = None) -> Any:
        def run(tbl: Any) -> Any:
            q = tbl.search().select(columns)
            if where:
                q = q.where(where)
            return q.limit(limit if limit is not None else max(1, tbl.count_rows(where))).to_arrow()

        return self._read(run)

    def _cached(self, name: str, fn: Callable[[], Any]) -> Any:
        """``fn()`` computed once per version (the cache keeps the two newest versions: a service moving on with a
        writer holds at most two copies of anything, and views pinned to older versions recompute)."""
        key = (self.version, name)
        value = self._cache.get(key)
        if value is None:
            value = fn()
            newest = sorted({v for v, _ in list(self._cache)} | {key[0]})[-2:]
            for old in [k for k in list(self._cache) if k[0] not in newest]:
                self._cache.pop(old, None)
            if key[0] in newest:
                self._cache[key] = value
        return value

    # -- entries --------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._read(lambda t: t.count_rows()))

    @property
    def format(self) -> str:
        return FORMAT

    def _checked(self, table: Any) -> np.ndarray:
        """The vectors of an arrow table of ``id``, ``doc``, ``crc`` and ``vector`` rows, each row checked against its
        checksum."""
        vecs = _vectors(table, self.dim)
        for i, d, c, v in zip(table["id"].to_pylist(), table["doc"].to_pylist(), table["crc"].to_pylist(), vecs):
            if _crc(v, d) != c:
                raise GalleryDamagedError(f"{self._label}: entry {i} is damaged (its checksum does not match)")
        return vecs

    def _docs(self, table: Any) -> list[dict]:
        """Entries (with ``id``) of an arrow table of ``id`` and ``doc`` rows (checked when it holds the vectors)."""
        if "vector" in table.column_names:
            self._checked(table)
        return [{**json.loads(d), "id": int(i)} for i, d in zip(table["id"].to_pylist(), table["doc"].to_pylist())]

    def _row(self, id: int) -> Any:
        """The whole stored row of ``id`` (an arrow table of one row), or a clear error."""
        got = self._rows(f"id = {int(id)}", ["id", "doc", "crc", "vector"], limit=1) if is_int(id) else None
        if got is None or got.num_rows == 0:
            raise IndexFormatError(f"no entry with id {id!r} in the store ({len(self)} entries)")
        return got

    def entry(self, id: int) -> dict:
        """The stored entry of ``id`` with ``"id"`` added."""
        return self._docs(self._row(id))[0]

    def embedding(self, id: int) -> np.ndarray:
        """The stored (unit-length, float32) embedding of ``id``, checked against its checksum."""
        return self._checked(self._row(id))[0].copy()

    def _sorted_ids(self, where: str | None) -> np.ndarray:
        got = self._rows(where, ["id"])
        return np.sort(got["id"].to_numpy())

    def iter_entries(self, batch: int = 10_000) -> Iterator[dict]:
        """Every entry (with ``"id"``) in id order, read ``batch`` at a time from one version."""
        view = self if self._pinned else self.view()
        ids = view._sorted_ids(None)
        for start in range(0, len(ids), batch):
            yield from view.by_ids(ids[start:start + batch])

    def by_ids(self, ids: Sequence[int]) -> list[dict]:
        """The entries of ``ids`` (with ``"id"``), in that order; ids not in the store are left out."""
        if len(ids) == 0:
            return []
        got = self._rows(_in("id", [int(i) for i in ids]), ["id", "doc"])
        by = {e["id"]: e for e in self._docs(got)}
        return [by[int(i)] for i in ids if int(i) in by]

    def entries(self) -> list[dict]:
        """Every entry (with ``"id"``) in id order."""
        return list(self.iter_entries())

    def page(self, offset: int = 0, limit: int = 50, modality: str | None = None, camera: int | None = None,
             pid: int | None = None) -> tuple[int, list[dict]]:
        """``(total, entries)``: entries passing the filters, in id order, ``limit`` from ``offset``."""
        parts = []
        if modality is not None:
            parts.append(f"modality = {_sql(modality)}")
        for col, v in (("camera", camera), ("pid", pid)):
            if v is not None:
                parts.append(f"{col} = {int(v)}")
        ids = self._cached(f"page:{parts}", lambda: self._sorted_ids(" AND ".join(parts) or None))
        return len(ids), self.by_ids(ids[offset:offset + limit].tolist())

    def _columns(self) -> Any:
        return self._cached("columns", lambda: self._rows(None, ["id", "camera", "modality", "pid", "dataset"]))

    def summary(self) -> dict[str, Any]:
        """Counts for a health check: per modality, the cameras, identities and datasets (cached per version)."""
        def build() -> dict[str, Any]:
            cols = self._columns()
            mods = cols["modality"].to_pylist()
            pids = {p for p in cols["pid"].to_pylist() if p is not None}
            return {"modalities": {m: mods.count(m) for m in MODALITIES},
                    "cameras": sorted({int(c) for c in cols["camera"].to_pylist()}), "identities": len(pids),
                    "datasets": sorted({str(d) for d in cols["dataset"].to_pylist() if d})}

        return self._cached("summary", build)

    def counts(self) -> list[tuple[str, int, int]]:
        """``(modality, camera, entries)`` per modality and camera."""
        cols = self._columns()
        tally: dict[tuple[str, int], int] = {}
        for m, c in zip(cols["modality"].to_pylist(), cols["camera"].to_pylist()):
            tally[(m, int(c))] = tally.get((m, int(c)), 0) + 1
        return [(m, c, n) for (m, c), n in sorted(tally.items())]

    def find(self, key: str) -> int | None:
        """The id of the entry with this key, or None."""
        got = self._rows(f"key = {_sql(key)}", ["id"], limit=1) if isinstance(key, str) else None
        return int(got["id"][0].as_py()) if got is not None and got.num_rows else None

    def find_keys(self, keys: Sequence[str]) -> dict[str, int]:
        """``{key: id}`` of the given keys that are in the store."""
        out: dict[str, int] = {}
        keys = list(keys)
        for start in range(0, len(keys), 1000):
            got = self._rows(_in("key", keys[start:start + 1000]), ["id", "key"])
            out.update(zip(got["key"].to_pylist(), got["id"].to_pylist()))
        return out

    def count_prefix(self, prefix: str) -> int:
        """How many entries have a key that starts with ``prefix`` (e.g. every tracklet of one ingested video)."""
        return int(self._read(lambda tbl: tbl.count_rows(f"starts_with(key, {_sql(prefix)})")))

    def find_suffix(self, tail: str, limit: int = 4) -> list[int]:
        """Ids of entries whose key ends with ``tail`` (at most ``limit``, lowest ids first)."""
        keys = self._cached("keys", lambda: self._rows(None, ["id", "key"]))
        ids = sorted(i for i, k in zip(keys["id"].to_pylist(), keys["key"].to_pylist()) if k.endswith(tail))
        return ids[:limit]

    def ids_where(self, pid: int, camera: int) -> list[int]:
        """Ids of entries of identity ``pid`` seen by ``camera``."""
        return self._sorted_ids(f"pid = {int(pid)} AND camera = {int(camera)}").tolist()

    # -- search ---------------------------------------------------------------------------------------------------
    def _filter(self, modality: str | None, cameras: Sequence[int] | None, exclude: Sequence[int] | None,
               since: Any, until: Any) -> str | None:
        check_filters(modality, cameras, exclude)
        lo, hi = time_range(since, until)
        parts = []
        if modality is not None:
            parts.append(f"modality = {_sql(modality)}")
        if cameras is not None:
            parts.append(_in("camera", list(cameras)) if len(cameras) else "FALSE")
        if lo is not None:
            parts.append(f"t >= {lo!r}")  # an entry without a capture time (NULL) passes no time filter
        if hi is not None:
            parts.append(f"t <= {hi!r}")
        if exclude:
            parts.append(f"NOT ({_in('id', sorted({int(i) for i in exclude}))})")
        return " AND ".join(parts) or None

    def search(self, queries: np.ndarray, k: int = 10, modality: str | None = None, cameras: Sequence[int] | None = None,
               exclude: Sequence[int] | None = None, since: Any = None, until: Any = None,
               exact: bool = False) -> list[list[tuple[int, float]]]:
        """Per query, up to ``k`` ``(id, cosine)`` pairs, best first (equal scores: lower id first), among the entries
        passing every filter: ``modality``; ``cameras`` (any of); ``since`` / ``until`` (capture time, ISO 8601 or
        epoch seconds, inclusive; ``until`` as a date alone is the end of that day; entries without a time fail a
        time filter); ``exclude`` (ids left out). ``exact`` scores every passing entry even in an approximate store.
        All queries are answered from one version (the latest, unless this handle is a pinned view)."""
        k = check_k(k)
        q = normalise(queries, self.dim, "queries")
        where = self._filter(modality, cameras, exclude, since, until)
        lo, hi = time_range(since, until)

        def mask_of(m: dict[str, np.ndarray]) -> np.ndarray:  # the same filter, on the in-memory columns
            keep = np.ones(len(m["id"]), bool)
            if modality is not None:
                keep &= m["rgb"] == (modality == "rgb")
            if cameras is not None:
                keep &= np.isin(m["camera"], np.asarray(list(cameras), np.int64))
            if lo is not None:
                keep &= m["t"] >= lo  # NaN (no capture time) fails both comparisons
            if hi is not None:
                keep &= m["t"] <= hi
            if exclude:
                keep &= ~np.isin(m["id"], np.asarray(list(exclude), np.int64))
            return keep

        view = self if self._pinned else self.view()
        return view._search(q, k, where, exact, mask_of)

    def _search(self, q: np.ndarray, k: int, where: str | None, exact: bool,
                mask_of: Callable[[dict[str, np.ndarray]], np.ndarray] | None = None) -> list[list[tuple[int, float]]]:
        total = len(self)
        n_pass = total if where is None else int(self._read(lambda t: t.count_rows(where)))
        if n_pass == 0 or len(q) == 0:
            return [[] for _ in range(len(q))]
        k = min(k, n_pass)
        indexed = self.kind == "ivf" and self._cached("ann", self._has_ann)
        if n_pass > EXACT_BELOW and (exact or not indexed) and total <= CACHE_ROWS and mask_of is not None:
            return self._exact_in_memory(q, k, mask_of)
        approximate = indexed and not exact and n_pass > EXACT_BELOW
        nlist = self._cached("partitions", self._partitions) if approximate else 0
        probes = min(nlist, math.ceil(PROBE * math.sqrt(nlist) / math.sqrt(n_pass / max(1, total)))) if approximate else 0
        marker = self._indexed_before() if approximate else None
        if marker is not None:
            return self._indexed_and_tail(q, k, where, probes, marker, n_pass, mask_of)
        out = []
        for row in q:
            fetch, approx = min(n_pass, k + FETCH_EXTRA), approximate
            while True:
                ids, scores = self._ranked(row, fetch, where, approx, probes)
                if len(ids) < k and approx:  # the probed partitions hold too few passing rows: answer exactly
                    approx = False
                    continue
                cut_unclear = fetch < n_pass and len(ids) >= k and scores[-1] >= scores[k - 1]
                if not cut_unclear:
                    break
                fetch = min(n_pass, fetch * 2)  # equal scores across the cut: settle it on more rows
            out.append([(int(i), float(s)) for i, s in zip(ids[:k], scores[:k])])
        return out

    def _in_memory(self, where: str | None) -> dict[str, np.ndarray]:
        """Ids, filter columns and vectors of the rows passing ``where``, as numpy arrays (``first``: one row per id,
        whatever racing writers left)."""
        got = self._rows(where, ["id", "camera", "modality", "t", "vector"])
        ids = got["id"].to_numpy()
        first = np.zeros(len(ids), bool)
        first[np.unique(ids, return_index=True)[1]] = True
        return {"id": ids, "first": first, "camera": got["camera"].to_numpy(),
                "rgb": np.asarray([m == "rgb" for m in got["modality"].to_pylist()], bool),
                "t": got["t"].to_numpy(zero_copy_only=False).astype(np.float64),
                "vector": np.ascontiguousarray(_vectors(got, self.dim))}

    def _matrix(self) -> dict[str, np.ndarray]:
        """This version's rows in memory (cached per version): exact scans of many rows."""
        return self._cached("matrix", lambda: self._in_memory(None))

    def _exact_in_memory(self, q: np.ndarray, k: int,
                         mask_of: Callable[[dict[str, np.ndarray]], np.ndarray]) -> list[list[tuple[int, float]]]:
        m = self._matrix()
        rows = np.flatnonzero(mask_of(m) & m["first"])
        ids = m["id"][rows]
        scores = m["vector"][rows] @ q.T  # [n_pass, Q]
        out = []
        for i in range(len(q)):
            s = scores[:, i]
            top = np.argpartition(-s, k - 1)[:k] if len(s) > k else np.arange(len(s))
            kth = s[top].min()
            tied = np.flatnonzero(s >= kth)  # every row level with the k-th: ties go to the lower id
            order = tied[np.lexsort((ids[tied], -s[tied]))][:k]
            out.append([(int(ids[j]), float(s[j])) for j in order])
        self._verify([i for r in out for i, _ in r], m)
        return out

    def _verify(self, ids: list[int], m: dict[str, np.ndarray]) -> None:
        """The stored rows of ``ids`` match their checksums and the in-memory copy the scores came from."""
        if not ids:
            return
        got = self._rows(_in("id", sorted(set(ids))), ["id", "doc", "crc", "vector"])
        vecs = self._checked(got)
        rows = np.flatnonzero(np.isin(m["id"], got["id"].to_numpy()) & m["first"])
        at = dict(zip(m["id"][rows].tolist(), rows.tolist()))
        for i, v in zip(got["id"].to_pylist(), vecs):
            if not np.array_equal(m["vector"][at[i]], v):
                raise GalleryDamagedError(f"{self._label}: entry {i} reads differently from one scan to the next")

    def _indexed_before(self) -> float | None:
        """The time before which every row is in the vector index (written by :meth:`compact`), or None."""
        def read() -> float:
            meta = self._tbl.schema.field("added").metadata or {}
            raw = meta.get(INDEXED_BEFORE.encode())
            return float(raw) if raw else -1.0

        value = self._cached("indexed_before", read)
        return None if value < 0 else value

    def _tail(self, marker: float) -> dict[str, np.ndarray]:
        """The rows added since the index was last brought up to date, in memory (cached per version)."""
        return self._cached("tail", lambda: self._in_memory(f"added >= {marker!r}"))

    def _indexed_and_tail(self, q: np.ndarray, k: int, where: str | None, probes: int, marker: float, n_pass: int,
                          mask_of: Callable[[dict[str, np.ndarray]], np.ndarray] | None) -> list[list[tuple[int, float]]]:
        """The approximate search of an indexed store: the index alone (LanceDB's ``fast_search``: no flat scan of the
        rows it does not hold yet) merged with an exact scan of those rows from memory."""
        tail = self._tail(marker)
        keep = (mask_of(tail) if mask_of is not None else np.ones(len(tail["id"]), bool)) & tail["first"]
        t_ids, t_vecs = tail["id"][keep], tail["vector"][keep]
        out = []
        for row in q:
            ids, scores = self._ranked(row, min(n_pass, k + FETCH_EXTRA), where, True, probes, fast=True)
            if len(t_ids):
                ids, scores = _best_first(np.concatenate([ids, t_ids]), np.concatenate([scores, t_vecs @ row]))
            if len(ids) < min(k, n_pass):  # the probed partitions hold too few passing rows: answer exactly
                ids, scores = self._ranked(row, min(n_pass, k + FETCH_EXTRA), where, False, 0)
            out.append([(int(i), float(s)) for i, s in zip(ids[:k], scores[:k])])
        if len(t_ids):
            in_tail = set(t_ids.tolist())
            self._verify([i for r in out for i, _ in r if i in in_tail], tail)
        return out

    def _ranked(self, q: np.ndarray, fetch: int, where: str | None, approximate: bool,
                probes: int, fast: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``fetch`` (ids, scores) best first by our own score (float32 dot products of the stored vectors), ties to
        the lower id; every returned vector is checked against its checksum. ``fast``: the index's rows only."""
        def run(tbl: Any) -> Any:
            s = tbl.search(q, vector_column_name="vector").distance_type("dot").limit(fetch)
            if approximate:
                s = s.nprobes(probes).refine_factor(REFINE)
                if fast:
                    s = s.fast_search()
            else:
                s = s.bypass_vector_index()
            if where:
                s = s.where(where, prefilter=True)
            return s.select(["id", "doc", "crc", "vector", "_distance"]).to_arrow()

        got = self._read(run)
        return _best_first(got["id"].to_numpy(), self._checked(got) @ q)

    def _has_ann(self) -> bool:
        return any(ix.columns == ["vector"] for ix in self._read(lambda t: list(t.list_indices())))

    def _partitions(self) -> int:
        for ix in self._read(lambda t: list(t.list_indices())):
            if ix.columns == ["vector"]:
                return int(getattr(ix, "index_details", {}).get("num_partitions", 0) or 0) or _nlist(len(self))
        return 0

    # -- writing --------------------------------------------------------------------------------------------------
    def _check_writable(self) -> None:
        if self.readonly:
            raise IndexFormatError(f"{self.path}: opened read-only")

    @contextlib.contextmanager
    def _host_lock(self) -> Iterator[None]:
        """Writers on one host take turns (``flock`` on ``.write.lock``, released by the kernel if a writer dies).

        LanceDB's own conflict detection is what holds across machines; measured here, a merge-insert racing an
        optimize can still commit a key twice, so on one host writes are also serialised (and optimize repairs any
        duplicate key it finds, and searches never return an id twice)."""
        if _is_uri(self.path):
            yield
            return
        import fcntl

        with open(Path(self.path) / ".write.lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _write(self, fn: Callable[[Any], Any]) -> Any:
        """Run a write on the latest version, retrying when another writer's commit conflicts with it."""
        self._check_writable()
        with self._host_lock():
            return self._write_locked(fn)

    def _write_locked(self, fn: Callable[[Any], Any]) -> Any:
        for attempt in range(RETRIES):
            self.refresh()
            try:
                return fn(self._tbl)
            except IndexFormatError:
                raise
            except Exception as e:  # noqa: BLE001 - lance's commit conflict errors have no public class
                text = str(e).lower()
                if attempt == RETRIES - 1 or not any(w in text for w in ("conflict", "retry", "concurrent", "commit")):
                    raise IndexFormatError(f"{self._label}: the write failed ({str(e).splitlines()[0][:400]})") from None
                time.sleep(min(1.0, 0.02 * 2 ** attempt) * (0.5 + np.random.random()))
        return None  # not reached

    def add(self, embeddings: np.ndarray, entries: list[dict], hook: Hook | None = None,
            skip_existing: bool = False) -> list[int]:
        """Add ``[N, dim]`` embeddings (re-normalised) and their entries in one commit; returns the ids added.

        A key twice in ``entries`` is an error; a key already in the store is an error and nothing is added, or with
        ``skip_existing`` that entry is left out. ``hook(ids, entries)``
        runs before the commit with the ids and the checked entries (which it may update, e.g. with thumbnail
        paths): a crash inside it leaves the store as it was. If another writer adds one of these keys between the
        check and the commit, its row is kept and this one is dropped (the key is the table's primary key)."""

        self._check_writable()
        emb = normalise(embeddings, self.dim, "embeddings")
        if len(entries) != len(emb):
            raise IndexFormatError(f"add: {len(emb)} embeddings but {len(entries)} entries")
        checked = [check_entry(e, f"add: entry {i}") for i, e in enumerate(entries)]
        for e in checked:
            capture_time(e)  # a malformed capture time is refused before anything is written
        keys = [e["key"] for e in checked]
        if len(set(keys)) != len(keys):
            raise IndexFormatError("add: a key appears twice in this add; nothing was added")
        if not checked:
            return []
        self.refresh()
        present = self.find_keys(keys)
        if present and not skip_existing:
            raise IndexFormatError(f"add: key {next(iter(present))!r} is already in the store; nothing was added")
        if present:
            keep = [i for i, k in enumerate(keys) if k not in present]
            emb, checked = emb[keep], [checked[i] for i in keep]
            keys = [keys[i] for i in keep]
            if not keys:
                return []
        ids = self._new_ids(keys)
        if hook is not None:
            hook(ids, checked)
        table = arrow_rows(ids, checked, emb, self._tbl.schema)
        self._write(lambda tbl: tbl.merge_insert("key").when_not_matched_insert_all().execute(_stamped(table)))
        self.refresh()
        return ids

    def _new_ids(self, keys: list[str]) -> list[int]:
        """The ids of new keys: :func:`key_id`, salted past an id another key already holds (a 52-bit hash collision)."""
        ids = [key_id(k) for k in keys]
        salt = 0
        while True:
            clash: set[int] = set()
            for start in range(0, len(ids), 1000):
                got = self._rows(_in("id", ids[start:start + 1000]), ["id"])
                clash.update(got["id"].to_pylist())
            clash.update(i for i in ids if ids.count(i) > 1)
            if not clash:
                return ids
            salt += 1
            ids = [key_id(k, salt) if i in clash else i for k, i in zip(keys, ids)]

    def delete(self, ids: Sequence[int] = (), keys: Sequence[str] = (), before: Any = None) -> int:
        """Delete entries by id, by key, and (retention) every entry captured before ``before``, in one commit;
        returns how many were deleted. Thumbnails of deleted entries go at the next :meth:`compact`."""
        cut = parse_time(before, "before")
        for i in ids:
            if not is_int(i):
                raise IndexFormatError(f"delete: an id must be an integer, got {i!r}")
        parts = []
        if ids:
            parts.append(_in("id", sorted({int(i) for i in ids})))
        if keys:
            parts.append(_in("key", sorted(set(keys))))
        if cut is not None:
            parts.append(f"t < {cut!r}")
        if not parts:
            return 0
        where = " OR ".join(f"({p})" for p in parts)
        result = self._write(lambda tbl: tbl.delete(where))
        self.refresh()
        return int(getattr(result, "num_deleted_rows", 0) or 0)

    def needs_compaction(self) -> bool:
        """True when an optimize is worth its cost: many small fragments, an approximate store without its vector
        index, or many rows outside the indexes."""
        stats = self._read(lambda t: t.stats())
        frags = stats["fragment_stats"]["num_fragments"] if isinstance(stats, dict) else stats.fragment_stats.num_fragments
        n = len(self)
        if self.kind == "ivf" and n >= IVF_MIN_ROWS and not self._has_ann():
            return True
        if frags > 64:
            return True
        indexes = self._read(lambda t: list(t.list_indices()))
        unindexed = max((getattr(ix, "num_unindexed_rows", 0) or 0 for ix in indexes), default=n)
        return unindexed > max(IVF_MIN_ROWS, n // 4)

    def compact(self, progress: Callable[[str], None] | None = None) -> None:
        """Optimize through the engine: merge small fragments and drop deleted rows, (re)build the vector index of an
        approximate store (trained once it holds ``IVF_MIN_ROWS`` entries, retrained when it has doubled) and the
        scalar indexes of the filter columns, remove versions and thumbnails no entry has referenced for ``GRACE``.
        Safe beside readers and other writers: each step is a commit of its own."""
        from lancedb.index import BTree, Bitmap, IvfPq

        say = progress or (lambda msg: None)
        self._check_writable()
        with self._host_lock():
            self._repair_duplicates(say)
        began: list[float] = []  # taken under the host lock, as adds stamp ``added``: rows stamped earlier get indexed
        say("compacting fragments")
        self._write(lambda tbl: (began.append(time.time()), tbl.optimize(cleanup_older_than=GRACE)))
        self.refresh()
        have = {tuple(ix.columns): ix for ix in self._read(lambda t: list(t.list_indices()))}
        n = len(self)
        if self.kind == "ivf" and n >= IVF_MIN_ROWS:
            ann = have.get(("vector",))
            trained = int(getattr(ann, "num_indexed_rows", 0) or 0) if ann is not None else 0
            if ann is None or n >= 2 * trained:
                nlist = _nlist(n)
                say(f"training the IVF-PQ index ({nlist} partitions) on {n} embeddings")
                config = IvfPq(distance_type="dot", num_partitions=nlist, num_sub_vectors=_sub_vectors(self.dim),
                               max_iterations=20, sample_rate=64)
                self._write(lambda tbl: tbl.create_index("vector", replace=True, config=config))
        for column, config in (("id", BTree()), ("key", BTree()), ("camera", BTree()), ("t", BTree()), ("pid", BTree()),
                               ("added", BTree()), ("modality", Bitmap())):
            if (column,) not in have and n:
                say(f"indexing {column}")
                self._write(lambda tbl, c=column, cf=config: tbl.create_index(c, replace=True, config=cf))
        self.refresh()
        if self._has_ann():
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                mark = {INDEXED_BEFORE: repr(began[-1] - (CLOCK_SLACK if _is_uri(self.path) else 0.0))}
                self._write(lambda tbl: tbl.replace_field_metadata("added", mark))
            self.refresh()
        self._cache.clear()
        if not _is_uri(self.path):
            from cmft.search.legacy import tidy

            say("removing unreferenced thumbnails")
            self._sweep_thumbnails()
            tidy(Path(self.path))

    def _repair_duplicates(self, say: Callable[[str], None]) -> None:
        """Keep one row of each key that racing writers committed twice (delete them all, add one back)."""
        import pyarrow as pa

        self.refresh()
        keys = self._rows(None, ["key"])["key"].to_numpy(zero_copy_only=False)
        uniq, counts = np.unique(keys, return_counts=True)
        dups = uniq[counts > 1].tolist()
        if not dups:
            return
        say(f"repairing {len(dups)} keys committed twice")
        rows = self._rows(_in("key", dups), [f.name for f in self._tbl.schema])
        _, first = np.unique(rows["key"].to_numpy(zero_copy_only=False), return_index=True)
        keep = rows.take(pa.array(np.sort(first))).cast(self._tbl.schema)
        self._write_locked(lambda tbl: tbl.delete(_in("key", dups)))
        self._write_locked(lambda tbl: tbl.add(keep))

    def _sweep_thumbnails(self) -> None:
        folder = Path(self.path) / THUMBS
        if not folder.is_dir():
            return
        used = {Path(t).name for t in (json.loads(d).get("thumbnail") for d in self._rows(None, ["doc"])["doc"].to_pylist())
                if isinstance(t, str)}
        old = time.time() - GRACE.total_seconds()
        for p in folder.iterdir():
            try:
                if p.name not in used and p.stat().st_mtime < old:
                    p.unlink(missing_ok=True)
            except OSError:
                pass

    def close(self) -> None:
        """Nothing to release (LanceDB holds no lock); kept for the :class:`Gallery` protocol."""

    def __enter__(self) -> GalleryStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GalleryStore({str(self.path)!r}, dim={self.dim}, kind={self.kind!r}, version={self.version})"


def arrow_rows(ids: Sequence[int], entries: list[dict], emb: np.ndarray, schema: Any) -> Any:
    """The table rows of checked entries and their unit float32 embeddings (the one place rows are made: adds and
    migrations)."""
    import pyarrow as pa

    docs = [json.dumps(e) for e in entries]
    return pa.table({
        "id": pa.array(list(ids), pa.int64()), "key": [e["key"] for e in entries],
        "camera": pa.array([e["camera"] for e in entries], pa.int64()), "modality": [e["modality"] for e in entries],
        "pid": pa.array([e["pid"] for e in entries], pa.int64()),
        "t": pa.array([capture_time(e) for e in entries], pa.float64()),
        "dataset": [str(e["dataset"]) if e.get("dataset") is not None else None for e in entries],
        "doc": docs, "crc": pa.array([_crc(v, d) for v, d in zip(emb, docs)], pa.uint32()),
        "added": pa.array([time.time()] * len(entries), pa.float64()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(emb, np.float32).ravel(), pa.float32()),
                                                    emb.shape[1]),
    }, schema=schema)


def _stamped(table: Any) -> Any:
    """``table`` with ``added`` set to now: called under the host lock, at the commit, so that an optimize (under the
    same lock) indexes every row stamped before it began."""
    import pyarrow as pa

    i = table.schema.get_field_index("added")
    return table.set_column(i, table.schema.field(i), pa.array([time.time()] * table.num_rows, pa.float64()))


def _lancedb() -> Any:
    try:
        import lancedb
    except ImportError:
        raise IndexFormatError("the gallery store needs LanceDB: pip install 'cmft[serve]'") from None
    return lancedb


def _best_first(ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, scores)`` by score descending, ties to the lower id, each id once (a key committed twice by racing
    writers is answered once)."""
    order = np.lexsort((ids, -scores))
    ids, scores = ids[order], scores[order]
    first = np.ones(len(ids), bool)
    first[1:] = ids[1:] != ids[:-1]
    return ids[first], scores[first]


def _vectors(table: Any, dim: int) -> np.ndarray:
    col = table["vector"].combine_chunks() if table.num_rows else None
    if col is None:
        return np.zeros((0, dim), np.float32)
    return col.values.to_numpy(zero_copy_only=False).reshape(-1, dim)[col.offset:col.offset + len(col)]


def _nlist(n: int) -> int:
    """About sqrt(N) IVF partitions, a power of two in [64, 4096]."""
    return int(2 ** np.clip(round(math.log2(max(1.0, math.sqrt(n)))), 6, 12))


def _sub_vectors(dim: int) -> int:
    """PQ sub-vectors: 16 dimensions each (8 for narrow embeddings), a divisor of ``dim``."""
    for width in ((16, 8, 4, 2, 1) if dim >= 256 else (8, 4, 2, 1)):
        if dim % width == 0:
            return dim // width
    return dim


def open_store(path: str | os.PathLike[str], readonly: bool = False) -> GalleryStore:
    """Open the store at ``path``; a folder of an old format (``cmft-gallery-index/1``, ``cmft-gallery-store/2``) is
    migrated first (not when ``readonly``: a reader never writes)."""
    from cmft.search import legacy

    if _is_uri(path):
        return GalleryStore(path, readonly=readonly)
    path = Path(path)
    old = legacy.old_format(path)
    if old is not None:
        if readonly:
            raise IndexFormatError(f"{path}: a {old} folder; convert it with `cmft index --upgrade --store {path}`")
        return legacy.migrate(path)
    if is_store(path):
        return GalleryStore(path, readonly=readonly)
    if not path.is_dir():
        raise IndexFormatError(f"{path}: no such index folder (build one with `cmft index`)")
    raise IndexFormatError(f"{path}: not a gallery store ({TABLE_DIR} missing; build one with `cmft index`)")


def upgrade(folder: str | os.PathLike[str]) -> GalleryStore:
    """Migrate a folder of an old format into a store in place (see :func:`cmft.search.legacy.migrate`)."""
    from cmft.search import legacy

    return legacy.migrate(Path(folder))


__all__ = ["FORMAT", "GalleryStore", "IVF_MIN_ROWS", "capture_time", "is_store", "open_store", "parse_time", "upgrade"]
