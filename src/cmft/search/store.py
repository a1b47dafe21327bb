"""The gallery store: tracklet embeddings on disk with transactions, for archives of millions of tracklets.

A store folder (format ``cmft-gallery-store/2``) holds

* ``store.sqlite``: the entries (key, camera, modality, identity, capture time, the whole entry as JSON) and the
  store's header, in SQLite (WAL journal). **Its commit is the commit of every change.**
* ``vectors.<gen>.f32``: the L2-normalised float32 embeddings, one row per entry, **appended only**;
* ``rows.<gen>.bin``: per row its entry id and the filter columns (camera, modality, capture time, IVF list),
  appended only, read into memory when the store opens (25 bytes a row);
* ``ivf.<gen>.npz``: the coarse quantiser of an approximate store (centroids and, for the rows sorted by list at
  the last compaction, each list's row range) and, for wide embeddings, a PCA projection to ``CODE_DIM``;
* ``codes.<gen>.f32``: each row's PCA code (wide embeddings of an approximate store), appended only: the
  approximate search ranks candidates on these (8x fewer bytes than the 2,048-d rows) and re-scores the best
  ``RERANK * k`` exactly;
* ``thumbs/``: one JPEG per entry (written by :mod:`cmft.search.indexing`).

An add writes its rows past the committed end of the two row files, flushes them, then commits the entries and
the new row count in one SQLite transaction. A process killed at any moment leaves either the old or the new
content: bytes past the committed count are ignored by readers and cut off by the next writer. Appends cost what
they add. Deletion marks entries in SQLite (readers drop them at once); :meth:`GalleryStore.compact` rewrites the
row files as a new generation (dropping deleted rows and grouping rows by IVF list) and switches to it in one
commit. One writer at a time holds ``write.lock``; any number of readers search while it writes.

Search is exact (``kind="flat"``) or approximate (``kind="ivf"``: an inverted file over k-means lists, trained at
a compaction once the store holds ``IVF_MIN_ROWS`` entries; exact until then). Filters (modality, cameras, time
range, excluded ids) are applied to the in-memory columns before any vector is read, and the approximate search
visits lists until it has seen enough entries *that pass the filters*, so a narrow filter does not starve it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cmft.atomic import write_atomic
from cmft.search.index import MODALITIES, IndexFormatError, _check_entry, _is_int, _normalise, check_filters

FORMAT = "cmft-gallery-store/2"
DB = "store.sqlite"
LOCK = "write.lock"
STORE_KINDS = ("flat", "ivf")
ROW = np.dtype([("id", "<i8"), ("camera", "<i4"), ("list", "<i4"), ("t", "<f8"), ("rgb", "u1")])  # 25 bytes, packed
IVF_MIN_ROWS = 20_000  # an approximate store is searched exactly below this many entries
PROBE = 5.0  # an unfiltered approximate search visits PROBE * sqrt(nlist) of the nlist ~ sqrt(N) lists
EXACT_BELOW = 4096  # fewer entries than this pass the filters: score them all exactly
CODE_DIM = 256  # PCA code width of embeddings wider than 2 * CODE_DIM (approximate stores)
RERANK = 16  # candidates re-scored exactly per result, after ranking on PCA codes
BLOCK = 32_768  # rows scored at once by an exact scan

Hook = Callable[[list[int], list[dict]], None]


# -- capture times --------------------------------------------------------------------------------------------
def parse_time(value: Any, what: str = "time") -> float | None:
    """Seconds since the epoch (UTC) of an ISO 8601 string (``2026-11-30T21:05:00+01:00``, ``2026-11-30``; no zone
    means UTC), a :class:`datetime` / :class:`date`, or a number of seconds; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise IndexFormatError(f"{what}: expected an ISO 8601 time, got {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        if not math.isfinite(float(value)):
            raise IndexFormatError(f"{what}: not a finite time: {value!r}")
        return float(value)
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        try:
            dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise IndexFormatError(f"{what}: {value!r} is not an ISO 8601 time (e.g. 2026-11-30T21:05:00Z)") from None
    else:
        raise IndexFormatError(f"{what}: expected an ISO 8601 time, got {type(value).__name__}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


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


# -- small helpers --------------------------------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _append(path: Path, committed_bytes: int, data: bytes) -> None:
    """Write ``data`` at ``committed_bytes`` (cutting off what a killed writer left past it) and flush to disk."""
    new = not path.exists()
    with open(path, "r+b" if not new else "w+b") as fh:
        fh.truncate(committed_bytes)
        fh.seek(committed_bytes)
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    if new:
        _fsync_dir(path.parent)


def _in_chunks(values: Sequence[Any], size: int = 900) -> Iterator[tuple[str, list[Any]]]:
    """``(placeholders, chunk)`` for SQL ``IN (...)`` over ``values``, under SQLite's bound-parameter limit."""
    values = list(values)
    for start in range(0, len(values), size):
        chunk = values[start:start + size]
        yield ",".join("?" * len(chunk)), chunk


def _records(ids: Sequence[int], entries: list[dict], times: list[float | None]) -> np.ndarray:
    """The ROW records of checked entries (their IVF list unassigned: -1)."""
    recs = np.zeros(len(entries), ROW)
    recs["id"] = ids
    recs["camera"] = [e["camera"] for e in entries]
    recs["rgb"] = [e["modality"] == "rgb" for e in entries]
    recs["t"] = [np.nan if t is None else t for t in times]
    recs["list"] = -1
    return recs


_INSERT = "INSERT INTO entries (id, key, row, camera, modality, pid, t, deleted, doc) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)"


def _entry_rows(ids: Sequence[int], first_row: int, entries: list[dict], times: list[float | None]) -> list[tuple]:
    """The ``entries`` table rows (for ``_INSERT``) of checked entries stored from row ``first_row`` on."""
    return [(i, e["key"], first_row + j, e["camera"], e["modality"], e["pid"], t, json.dumps(e))
            for j, (i, e, t) in enumerate(zip(ids, entries, times))]


def _topk(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best ``(scores, ids)``, by score descending then id ascending (ties at the cut go to lower ids)."""
    if len(scores) > k:
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        keep = scores >= kth
        scores, ids = scores[keep], ids[keep]
    order = np.lexsort((ids, -scores))[:k]
    return scores[order], ids[order]


@dataclass
class _Snapshot:
    """What one reader sees: the committed rows of one generation (immutable once built)."""

    gen: int
    rows: int  # committed rows in the files
    sorted_rows: int  # rows [0, sorted_rows) are grouped by IVF list (offsets)
    deleted_version: int
    cols: dict[str, np.ndarray]  # ROW's fields, each a contiguous [rows] array
    live: np.ndarray  # [rows] bool: not deleted
    vectors: np.ndarray  # [rows, dim] float32 memmap (or empty)
    centroids: np.ndarray | None  # [nlist, dim]
    offsets: np.ndarray | None  # [nlist + 1] row ranges of the sorted rows
    proj: np.ndarray | None = None  # [CODE_DIM, dim] PCA rows (orthonormal), or None: rank on the vectors
    codes: np.ndarray | None = None  # [rows, CODE_DIM] float32 memmap

    @property
    def n_live(self) -> int:
        return int(self.live.sum())


class GalleryStore:
    """A gallery store folder opened for reading (and writing unless ``readonly``); see the module docstring.

    Entry ids are stable (never reused, not changed by compaction); ``len(store)`` counts live entries."""

    def __init__(self, path: str | os.PathLike[str], readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        db = self.path / DB
        if not db.is_file():
            raise IndexFormatError(f"{self.path}: no gallery store ({DB} missing; build one with `cmft index`)")
        self._sql_lock = threading.RLock()
        try:
            self._db = _connect(db, readonly)
            head = dict(self._db.execute("SELECT name, value FROM info").fetchall())
        except sqlite3.DatabaseError as e:
            raise IndexFormatError(f"{db}: not a readable gallery store ({e})") from None
        if head.get("format") != FORMAT:
            raise IndexFormatError(f"{db}: format {head.get('format')!r} is not {FORMAT!r}")
        try:
            self.dim = int(head["dim"])
            self.kind = str(head["kind"])
            self.meta: dict = json.loads(head.get("meta", "{}"))
        except (KeyError, ValueError) as e:
            raise IndexFormatError(f"{db}: malformed header ({e})") from None
        if self.kind not in STORE_KINDS or self.dim < 1:
            raise IndexFormatError(f"{db}: kind {self.kind!r} / dim {self.dim} not understood")
        self._snap_lock = threading.Lock()
        self._snap: _Snapshot | None = None
        self.refresh()

    # -- creation -----------------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], dim: int, kind: str = "flat", meta: dict | None = None) -> GalleryStore:
        """A new empty store in ``path`` (created; it must not hold a store already). ``kind``: "flat" (exact) or
        "ivf" (approximate above ``IVF_MIN_ROWS`` entries; "hnsw", the old name, means "ivf")."""
        kind = "ivf" if kind == "hnsw" else kind
        if kind not in STORE_KINDS:
            raise IndexFormatError(f"unknown index kind {kind!r}; choose 'flat' (exact) or 'ivf' (approximate)")
        if not _is_int(dim) or dim < 1:
            raise IndexFormatError(f"dim must be a positive integer, got {dim!r}")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if (path / DB).exists():
            raise IndexFormatError(f"{path}: already holds a gallery store")
        _write_new_db(path, {"format": FORMAT, "dim": int(dim), "kind": kind, "meta": json.dumps(meta or {})}, [])
        return cls(path)

    # -- the reader's view --------------------------------------------------------------------------------
    def _info(self) -> dict[str, str]:
        with self._sql_lock:
            return dict(self._db.execute("SELECT name, value FROM info").fetchall())

    def refresh(self) -> bool:
        """See what writers committed since the last look (new rows, deletions, a compaction); True if anything
        changed. Cheap when nothing did: one small query."""
        for attempt in range(3):
            with self._snap_lock:  # the header is read under the lock too: a snapshot never goes back in time
                info, dead = self._committed()
                try:
                    return self._load(info, dead)
                except (IndexFormatError, OSError):
                    if attempt == 2 or self._info().get("gen") == info.get("gen"):
                        raise
                    # a compaction switched generations (and removed the old files) while this one was being read
        return False  # not reached

    def _committed(self) -> tuple[dict[str, str], list[int]]:
        """The header and the deleted rows, read in one SQLite read transaction (so they agree)."""
        with self._sql_lock:
            self._db.execute("BEGIN")
            try:
                info = dict(self._db.execute("SELECT name, value FROM info").fetchall())
                dead = [r for (r,) in self._db.execute("SELECT row FROM entries WHERE deleted = 1")]
            finally:
                self._db.execute("COMMIT")
        return info, dead

    def _load(self, info: dict[str, str], dead: list[int]) -> bool:
        """Build the snapshot of ``info`` (the committed header) and ``dead`` (its deleted rows); the caller holds
        ``_snap_lock``."""
        gen, rows = int(info["gen"]), int(info["rows"])
        sorted_rows, dver = int(info["sorted_rows"]), int(info["deleted_version"])
        old = self._snap
        if old is not None and (old.gen, old.rows, old.deleted_version) == (gen, rows, dver):
            return False
        if old is not None and old.gen == gen and rows >= old.rows:
            cols = old.cols if rows == old.rows else {
                name: np.concatenate([old.cols[name], new]) for name, new in _columns(self._read_rows(gen, old.rows, rows)).items()}
            centroids, offsets, proj = old.centroids, old.offsets, old.proj
        else:
            cols = _columns(self._read_rows(gen, 0, rows))
            centroids, offsets, proj = self._read_ivf(gen, info)
        live = np.ones(rows, bool)
        if dead:
            live[np.asarray(dead, np.int64)] = False
        vec_path = self.path / f"vectors.{gen}.f32"
        if rows:
            if not vec_path.is_file() or vec_path.stat().st_size < rows * self.dim * 4:
                raise IndexFormatError(f"{vec_path}: shorter than the {rows} rows {DB} has committed")
            vectors = np.memmap(vec_path, np.float32, "r", shape=(rows, self.dim))
        else:
            vectors = np.zeros((0, self.dim), np.float32)
        codes = None
        if proj is not None and rows:
            code_path = self.path / f"codes.{gen}.f32"
            if not code_path.is_file() or code_path.stat().st_size < rows * len(proj) * 4:
                raise IndexFormatError(f"{code_path}: shorter than the {rows} rows {DB} has committed")
            codes = np.memmap(code_path, np.float32, "r", shape=(rows, len(proj)))
        self._snap = _Snapshot(gen, rows, sorted_rows, dver, cols, live, vectors, centroids, offsets, proj, codes)
        return True

    def _read_rows(self, gen: int, start: int, stop: int) -> np.ndarray:
        path = self.path / f"rows.{gen}.bin"
        if stop == start:
            return np.zeros(0, ROW)
        if not path.is_file() or path.stat().st_size < stop * ROW.itemsize:
            raise IndexFormatError(f"{path}: shorter than the {stop} rows {DB} has committed")
        return np.fromfile(path, ROW, count=stop - start, offset=start * ROW.itemsize)

    def _read_ivf(self, gen: int, info: dict[str, str]) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        if int(info.get("nlist", 0)) == 0:
            return None, None, None
        path = self.path / f"ivf.{gen}.npz"
        try:
            with np.load(path, allow_pickle=False) as z:
                proj = np.ascontiguousarray(z["proj"], np.float32) if "proj" in z.files else None
                return np.ascontiguousarray(z["centroids"], np.float32), z["offsets"].astype(np.int64), proj
        except (OSError, KeyError, ValueError) as e:
            raise IndexFormatError(f"{path}: unreadable IVF lists ({e})") from None

    def _view(self) -> _Snapshot:
        snap = self._snap
        assert snap is not None
        return snap

    # -- entries ------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._view().n_live

    @property
    def format(self) -> str:
        return FORMAT

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._sql_lock:
            return self._db.execute(sql, tuple(args)).fetchall()

    def entry(self, id: int) -> dict:
        """The stored entry of ``id`` with ``"id"`` added."""
        got = self._query("SELECT doc FROM entries WHERE id = ? AND deleted = 0", (int(id),)) if _is_int(id) else []
        if not got:
            raise IndexFormatError(f"no entry with id {id!r} in the store ({len(self)} entries)")
        return {**json.loads(got[0][0]), "id": int(id)}

    def iter_entries(self, batch: int = 10_000) -> Iterator[dict]:
        """Every live entry (with ``"id"``) in id order, read ``batch`` at a time."""
        last = -1
        while True:
            rows = self._query("SELECT id, doc FROM entries WHERE deleted = 0 AND id > ? ORDER BY id LIMIT ?", (last, batch))
            if not rows:
                return
            for i, doc in rows:
                yield {**json.loads(doc), "id": i}
            last = rows[-1][0]

    def entries(self) -> list[dict]:
        """Every live entry (with ``"id"``) in id order."""
        return list(self.iter_entries())

    def page(self, offset: int = 0, limit: int = 50, modality: str | None = None, camera: int | None = None,
             pid: int | None = None) -> tuple[int, list[dict]]:
        """``(total, entries)``: live entries passing the filters, in id order, ``limit`` from ``offset``."""
        where, args = ["deleted = 0"], []
        for col, v in (("modality", modality), ("camera", camera), ("pid", pid)):
            if v is not None:
                where.append(f"{col} = ?")
                args.append(v)
        cond = " AND ".join(where)
        total = self._query(f"SELECT COUNT(*) FROM entries WHERE {cond}", args)[0][0]
        rows = self._query(f"SELECT id, doc FROM entries WHERE {cond} ORDER BY id LIMIT ? OFFSET ?", [*args, limit, offset])
        return int(total), [{**json.loads(doc), "id": i} for i, doc in rows]

    def summary(self) -> dict[str, Any]:
        """Counts for a health check: per modality, the cameras, identities and datasets (aggregated in SQLite)."""
        mods = dict(self._query("SELECT modality, COUNT(*) FROM entries WHERE deleted = 0 GROUP BY modality"))
        cams = [c for (c,) in self._query("SELECT DISTINCT camera FROM entries WHERE deleted = 0 ORDER BY camera")]
        ids = self._query("SELECT COUNT(DISTINCT pid) FROM entries WHERE deleted = 0 AND pid IS NOT NULL")[0][0]
        sets = [d for (d,) in self._query("SELECT DISTINCT json_extract(doc, '$.dataset') FROM entries WHERE deleted = 0") if d]
        return {"modalities": {m: int(mods.get(m, 0)) for m in MODALITIES}, "cameras": cams, "identities": int(ids),
                "datasets": sorted(map(str, sets))}

    @property
    def next_id(self) -> int:
        """The id the next added entry gets (ids are never reused)."""
        return int(self._info()["next_id"])

    def counts(self) -> list[tuple[str, int, int]]:
        """``(modality, camera, entries)`` per modality and camera, from SQLite."""
        return [(m, int(c), int(n)) for m, c, n in self._query(
            "SELECT modality, camera, COUNT(*) FROM entries WHERE deleted = 0 GROUP BY modality, camera ORDER BY modality, camera")]

    def find(self, key: str) -> int | None:
        """The id of the live entry with this key, or None."""
        got = self._query("SELECT id FROM entries WHERE key = ? AND deleted = 0", (key,))
        return int(got[0][0]) if got else None

    def find_suffix(self, tail: str, limit: int = 4) -> list[int]:
        """Ids of live entries whose key ends with ``tail`` (at most ``limit``)."""
        esc = tail.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return [i for (i,) in self._query("SELECT id FROM entries WHERE deleted = 0 AND key LIKE ? ESCAPE '\\' ORDER BY id LIMIT ?",
                                          ("%" + esc, limit))]

    def ids_where(self, pid: int, camera: int) -> list[int]:
        """Ids of live entries of identity ``pid`` seen by ``camera``."""
        return [i for (i,) in self._query("SELECT id FROM entries WHERE deleted = 0 AND pid = ? AND camera = ?", (pid, camera))]

    def _rows_of(self, ids: Sequence[int]) -> np.ndarray:
        out = []
        next_id = None
        for marks, chunk in _in_chunks([int(i) for i in ids]):
            got = dict(self._query(f"SELECT id, row FROM entries WHERE id IN ({marks})", chunk))
            missing = [i for i in chunk if i not in got]
            if missing and next_id is None:
                next_id = self.next_id
            unknown = [i for i in missing if not 0 <= i < next_id]  # deleted ones are fine
            if unknown:
                raise IndexFormatError(f"exclude names ids {unknown[:5]} that are not in the store")
            out.extend(got[i] for i in chunk if i in got)
        return np.asarray(out, np.int64)

    def embedding(self, id: int) -> np.ndarray:
        """The stored (unit-length, float32) embedding of ``id`` (a copy)."""
        got = self._query("SELECT row FROM entries WHERE id = ? AND deleted = 0", (int(id),)) if _is_int(id) else []
        if not got:
            raise IndexFormatError(f"no entry with id {id!r} in the store ({len(self)} entries)")
        snap = self._view()
        row = int(got[0][0])
        if row >= snap.rows:  # committed after this reader's last refresh
            self.refresh()
            snap = self._view()
        return np.array(snap.vectors[row], np.float32)

    # -- search -------------------------------------------------------------------------------------------
    def _mask(self, snap: _Snapshot, modality: str | None, cameras: Sequence[int] | None, exclude: Sequence[int] | None,
              since: Any, until: Any) -> np.ndarray:
        check_filters(modality, cameras, exclude)
        lo, hi = parse_time(since, "since"), parse_time(until, "until")
        keep = snap.live.copy()
        cols = snap.cols
        if modality is not None:
            keep &= cols["rgb"] == (modality == "rgb")
        if cameras is not None:
            keep &= np.isin(cols["camera"], np.asarray(list(cameras), np.int32))
        if lo is not None:
            keep &= cols["t"] >= lo  # NaN (no capture time) fails both comparisons
        if hi is not None:
            keep &= cols["t"] <= hi
        if exclude:
            rows = self._rows_of(exclude)
            keep[rows[rows < snap.rows]] = False
        return keep

    def search(self, queries: np.ndarray, k: int = 10, modality: str | None = None, cameras: Sequence[int] | None = None,
               exclude: Sequence[int] | None = None, since: Any = None, until: Any = None,
               exact: bool = False) -> list[list[tuple[int, float]]]:
        """Per query, up to ``k`` ``(id, cosine)`` pairs, best first (equal scores: lower id first), among the entries
        passing every filter: ``modality``; ``cameras`` (any of); ``since`` / ``until`` (capture time, ISO 8601 or
        epoch seconds, inclusive; entries without a time fail a time filter); ``exclude`` (ids left out).
        ``exact`` scores every passing entry even in an approximate store (all queries in one scan)."""
        if not _is_int(k) or k < 1:
            raise IndexFormatError(f"k must be a positive integer, got {k!r}")
        q = _normalise(queries, self.dim, "queries")
        self.refresh()  # one small query: what writers committed since is searched too
        snap = self._view()
        mask = self._mask(snap, modality, cameras, exclude, since, until)
        n_pass = int(mask.sum())
        if n_pass == 0 or len(q) == 0:
            return [[] for _ in range(len(q))]
        k = min(int(k), n_pass)
        if exact or snap.centroids is None or n_pass <= EXACT_BELOW or self.kind == "flat":
            found = self._exact(snap, q, k, mask)
        else:
            found = [self._ivf(snap, q[i], k, mask, n_pass) for i in range(len(q))]
        return [[(int(i), float(s)) for s, i in zip(scores, ids)] for scores, ids in found]

    def _score(self, snap: _Snapshot, rows: np.ndarray, q: np.ndarray) -> np.ndarray:
        return snap.vectors[rows] @ q

    def _exact(self, snap: _Snapshot, q: np.ndarray, k: int, mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        best = [(np.zeros(0, np.float32), np.zeros(0, np.int64)) for _ in range(len(q))]
        for start in range(0, snap.rows, BLOCK):
            m = mask[start:start + BLOCK]
            rows = np.flatnonzero(m)
            if len(rows) == 0:
                continue
            if len(rows) > len(m) // 4:  # dense: one matrix product over the block, then the mask
                scores = (np.asarray(snap.vectors[start:start + len(m)]) @ q.T)[rows]
            else:
                scores = np.asarray(snap.vectors[start + rows]) @ q.T
            ids = snap.cols["id"][start + rows]
            for i in range(len(q)):
                s, d = best[i]
                best[i] = _topk(np.concatenate([s, scores[:, i]]), np.concatenate([d, ids]), k)
        return best

    def _ivf(self, snap: _Snapshot, q: np.ndarray, k: int, mask: np.ndarray, n_pass: int) -> tuple[np.ndarray, np.ndarray]:
        """Visit the IVF lists nearest to ``q`` (PROBE * sqrt(nlist) of them without a filter, more under a narrow
        one), score their passing entries on the PCA codes (wide embeddings; else exactly) and re-score the best
        ``RERANK * k`` exactly."""
        centroids, offsets = snap.centroids, snap.offsets
        assert centroids is not None and offsets is not None
        nlist = len(centroids)
        s = snap.sorted_rows
        starts, ends = offsets[:-1], offsets[1:]
        full = ends > starts
        passing = np.zeros(nlist, np.int64)
        if full.any():
            passing[full] = np.add.reduceat(mask[:s].view(np.uint8), starts[full], dtype=np.int64)
        tail_lists, tail_mask = snap.cols["list"][s:], mask[s:]
        if len(tail_lists):
            passing += np.bincount(tail_lists[tail_mask], minlength=nlist)[:nlist]
        order = np.argsort(-(centroids @ q), kind="stable")
        # under a filter passing a share f of the gallery, the k best passing entries lie farther out, over about
        # 1/sqrt(f) times as many lists (measured in benchmarks/bench_gallery.py); and never fewer than 4k entries
        share = n_pass / max(1, snap.n_live)
        seen = np.cumsum(passing[order])
        n_lists = max(math.ceil(PROBE * math.sqrt(nlist) / math.sqrt(share)), int(np.searchsorted(seen, 4 * k)) + 1)
        chosen = np.sort(order[:n_lists])
        coded = snap.codes is not None and snap.proj is not None
        table = snap.codes if coded else snap.vectors
        qq = snap.proj @ q if coded else q
        rows_parts, score_parts = [], []
        for c in chosen[passing[chosen] > 0]:
            a, b = int(starts[c]), int(ends[c])
            m = mask[a:b]
            hit = np.flatnonzero(m)
            if len(hit) * 4 > b - a:  # mostly passing: score the list's contiguous rows in place
                scores = np.asarray(table[a:b]) @ qq
                scores = scores[hit] if len(hit) < b - a else scores
            else:
                scores = np.asarray(table[a + hit]) @ qq
            rows_parts.append(a + hit)
            score_parts.append(scores)
        if len(tail_lists):
            pick = np.zeros(nlist, bool)
            pick[chosen] = True
            extra = s + np.flatnonzero(tail_mask & pick[tail_lists])
            rows_parts.append(extra)
            score_parts.append(np.asarray(table[extra]) @ qq)
        rows = np.concatenate(rows_parts) if rows_parts else np.zeros(0, np.int64)
        if len(rows) < k:  # too few near the query (a narrow filter on far lists): answer exactly
            return self._exact(snap, q[None], k, mask)[0]
        scores = np.concatenate(score_parts)
        if not coded:
            return _topk(scores, snap.cols["id"][rows], k)
        if len(rows) > RERANK * k:  # PCA codes rank as the inner product does, up to what PCA leaves out
            rows = np.sort(rows[np.argpartition(-scores, RERANK * k)[:RERANK * k]])
        return _topk(self._score(snap, rows, q), snap.cols["id"][rows], k)

    # -- writing ------------------------------------------------------------------------------------------
    def _check_writable(self) -> None:
        if self.readonly:
            raise IndexFormatError(f"{self.path}: opened read-only")

    @contextlib.contextmanager
    def _writer(self) -> Iterator[dict[str, str]]:
        """Hold ``write.lock`` (one writer at a time, released by the kernel if the process dies) and yield the
        committed header, read after the lock is taken."""
        import fcntl

        self._check_writable()
        with open(self.path / LOCK, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield self._info()
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        """One SQLite write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error)."""
        with self._sql_lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def add(self, embeddings: np.ndarray, entries: list[dict], hook: Hook | None = None) -> list[int]:
        """Append ``[N, dim]`` embeddings (re-normalised) and their entries in one transaction; returns the new ids.

        A key already in the store (or twice in ``entries``) is an error and nothing is added. ``hook(ids, entries)``
        runs under the writer lock before the commit, with the new ids and the checked entries (which it may
        update, e.g. with thumbnail paths): a crash inside it leaves the store as it was."""
        emb = _normalise(embeddings, self.dim, "embeddings")
        if len(entries) != len(emb):
            raise IndexFormatError(f"add: {len(emb)} embeddings but {len(entries)} entries")
        checked = [_check_entry(e, f"add: entry {i}") for i, e in enumerate(entries)]
        times = [capture_time(e) for e in checked]
        if len({e["key"] for e in checked}) != len(checked):
            raise IndexFormatError("add: a key appears twice in this add; nothing was added")
        with self._writer() as info:
            for marks, chunk in _in_chunks([e["key"] for e in checked]):
                hit = self._query(f"SELECT key FROM entries WHERE key IN ({marks})", chunk)
                if hit:
                    raise IndexFormatError(f"add: key {hit[0][0]!r} is already in the store; nothing was added")
            gen, rows, next_id = int(info["gen"]), int(info["rows"]), int(info["next_id"])
            ids = list(range(next_id, next_id + len(checked)))
            if hook is not None:
                hook(ids, checked)
            recs = _records(ids, checked, times)
            snap = self._view()
            centroids, _, proj = (snap.centroids, None, snap.proj) if snap.gen == gen else self._read_ivf(gen, info)
            if centroids is not None:
                recs["list"] = _assign(emb, centroids)
            if proj is not None:
                _append(self.path / f"codes.{gen}.f32", rows * len(proj) * 4, (emb @ proj.T).astype(np.float32).tobytes())
            _append(self.path / f"vectors.{gen}.f32", rows * self.dim * 4, emb.tobytes())
            _append(self.path / f"rows.{gen}.bin", rows * ROW.itemsize, recs.tobytes())
            with self._transaction() as cur:
                cur.executemany(_INSERT, _entry_rows(ids, rows, checked, times))
                cur.executemany("UPDATE info SET value = ? WHERE name = ?",
                                [(str(rows + len(checked)), "rows"), (str(next_id + len(checked)), "next_id")])
        self.refresh()
        return ids

    def delete(self, ids: Sequence[int] = (), keys: Sequence[str] = (), before: Any = None) -> int:
        """Delete entries by id, by key, and (retention) every entry captured before ``before``; returns how many
        were deleted. Searches drop them at once; :meth:`compact` reclaims their space and thumbnails."""
        cut = parse_time(before, "before")
        n = 0
        with self._writer(), self._transaction() as cur:
            for column, values in (("id", [int(i) for i in ids]), ("key", list(keys))):
                for marks, chunk in _in_chunks(values):
                    n += cur.execute(f"UPDATE entries SET deleted = 1 WHERE deleted = 0 AND {column} IN ({marks})", chunk).rowcount
            if cut is not None:
                n += cur.execute("UPDATE entries SET deleted = 1 WHERE deleted = 0 AND t < ?", (cut,)).rowcount
            if n:
                cur.execute("UPDATE info SET value = CAST(value AS INTEGER) + 1 WHERE name = 'deleted_version'")
        self.refresh()
        return n

    def needs_compaction(self) -> bool:
        """True when deleted rows or rows outside the IVF lists have piled up (a compaction is then worth its cost)."""
        snap = self._view()
        dead = snap.rows - snap.n_live
        tail = snap.rows - snap.sorted_rows
        untrained = self.kind == "ivf" and snap.centroids is None and snap.n_live >= IVF_MIN_ROWS
        grown = self.kind == "ivf" and snap.centroids is not None and tail > max(IVF_MIN_ROWS, snap.sorted_rows // 2)
        return untrained or grown or dead > max(1000, snap.rows // 4)

    def compact(self, progress: Callable[[str], None] | None = None) -> None:
        """Rewrite the live rows as a new generation (grouped by IVF list for an approximate store, whose lists are
        (re)trained when the store has grown past them), switch to it in one commit, then remove the old files and
        the deleted entries' thumbnails. A crash at any point leaves the old generation in use."""
        say = progress or (lambda msg: None)
        with self._writer() as info:
            self.refresh()
            snap = self._view()
            gen = int(info["gen"])
            new = gen + 1
            rows = np.flatnonzero(snap.live)
            centroids, proj = snap.centroids, snap.proj
            lists = snap.cols["list"][rows].astype(np.int64)
            if self.kind == "ivf" and len(rows) >= IVF_MIN_ROWS:
                nlist = _nlist(len(rows))
                if centroids is None or nlist >= 2 * len(centroids):
                    say(f"training {nlist} IVF lists on {min(len(rows), 40 * nlist)} of {len(rows)} embeddings")
                    centroids, proj = _train(snap.vectors, rows, nlist)
                    lists = np.full(len(rows), -1, np.int64)
                todo = np.flatnonzero(lists < 0)
                if len(todo):
                    say(f"assigning {len(todo)} embeddings to IVF lists")
                    for start in range(0, len(todo), BLOCK):
                        part = todo[start:start + BLOCK]
                        lists[part] = _assign(np.asarray(snap.vectors[rows[part]]), centroids)
                order = np.lexsort((snap.cols["id"][rows], lists))
                rows, lists = rows[order], lists[order]
                offsets = np.searchsorted(lists, np.arange(len(centroids) + 1)).astype(np.int64)
            else:
                centroids, offsets, proj = None, None, None
                lists[:] = -1
            say(f"writing {len(rows)} rows as generation {new}")
            cols = np.zeros(len(rows), ROW)
            for name in ROW.names:
                cols[name] = snap.cols[name][rows]
            cols["list"] = lists
            vec_path, row_path = self.path / f"vectors.{new}.f32", self.path / f"rows.{new}.bin"
            code_fh = open(self.path / f"codes.{new}.f32", "wb") if proj is not None else None
            with open(vec_path, "wb") as fh:
                for start in range(0, len(rows), BLOCK):
                    block = np.ascontiguousarray(snap.vectors[rows[start:start + BLOCK]], np.float32)
                    fh.write(block.tobytes())
                    if code_fh is not None:
                        code_fh.write((block @ proj.T).astype(np.float32).tobytes())
                fh.flush()
                os.fsync(fh.fileno())
            if code_fh is not None:
                code_fh.flush()
                os.fsync(code_fh.fileno())
                code_fh.close()
            write_atomic(row_path, lambda fh: fh.write(cols.tobytes()), binary=True)
            if centroids is not None:
                write_atomic(self.path / f"ivf.{new}.npz", lambda fh: np.savez(
                    fh, centroids=centroids, offsets=offsets, **({} if proj is None else {"proj": proj})), binary=True)
            _fsync_dir(self.path)
            gone = [(i, json.loads(d).get("thumbnail")) for i, d in self._query("SELECT id, doc FROM entries WHERE deleted = 1")]
            with self._transaction() as cur:
                cur.execute("DELETE FROM entries WHERE deleted = 1")
                cur.execute("CREATE TEMP TABLE moved (id INTEGER PRIMARY KEY, row INTEGER)")
                cur.executemany("INSERT INTO moved VALUES (?, ?)", zip(cols["id"].tolist(), range(len(rows))))
                cur.execute("UPDATE entries SET row = (SELECT row FROM moved WHERE moved.id = entries.id)")
                cur.execute("DROP TABLE moved")
                cur.executemany("UPDATE info SET value = ? WHERE name = ?",
                                [(str(new), "gen"), (str(len(rows)), "rows"),
                                 (str(len(rows) if centroids is not None else 0), "sorted_rows"),
                                 (str(0 if centroids is None else len(centroids)), "nlist")])
                cur.execute("UPDATE info SET value = CAST(value AS INTEGER) + 1 WHERE name = 'deleted_version'")
            self.refresh()
            _remove_other_generations(self.path, new)
            for _, thumb in gone:
                if isinstance(thumb, str) and thumb.startswith("thumbs/") and ".." not in thumb:
                    (self.path / thumb).unlink(missing_ok=True)

    def recover(self) -> None:
        """Tidy what a killed writer left (row bytes past the commit, files of an unfinished compaction)."""
        with self._writer() as info:
            gen, rows = int(info["gen"]), int(info["rows"])
            snap = self._view()
            code_dim = 0 if snap.proj is None else len(snap.proj)
            for name, size in ((f"vectors.{gen}.f32", rows * self.dim * 4), (f"rows.{gen}.bin", rows * ROW.itemsize),
                               (f"codes.{gen}.f32", rows * code_dim * 4)):
                p = self.path / name
                if p.exists() and p.stat().st_size > size:
                    with open(p, "r+b") as fh:
                        fh.truncate(size)
            _remove_other_generations(self.path, gen)
            from cmft.search.index import EMBEDDINGS, ENTRIES, INDEX

            for name in (INDEX, ENTRIES, EMBEDDINGS):  # an upgrade killed after its commit
                (self.path / name).unlink(missing_ok=True)
            for tmp in (self.path / "thumbs").glob(".*.tmp"):  # a thumbnail being written when a writer died
                tmp.unlink(missing_ok=True)

    def close(self) -> None:
        with self._sql_lock:
            self._db.close()

    def __enter__(self) -> GalleryStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GalleryStore({str(self.path)!r}, dim={self.dim}, kind={self.kind!r}, entries={len(self)})"


# -- IVF ------------------------------------------------------------------------------------------------------
def _columns(records: np.ndarray) -> dict[str, np.ndarray]:
    """ROW records as one contiguous array per field (filters compare these: several times faster than strided)."""
    return {name: np.ascontiguousarray(records[name]) for name in ROW.names}


def _nlist(n: int) -> int:
    """About sqrt(N) lists, a power of two in [64, 8192]."""
    return int(2 ** np.clip(round(math.log2(max(1.0, math.sqrt(n)))), 6, 13))


def _train(vectors: np.ndarray, rows: np.ndarray, nlist: int) -> tuple[np.ndarray, np.ndarray | None]:
    """k-means centroids (FAISS, spherical) on a sample of the rows, and for wide embeddings the PCA projection
    (top ``CODE_DIM`` principal directions of the uncentred sample: the inner product is what they keep)."""
    import faiss

    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(rows, size=min(len(rows), 40 * nlist), replace=False))
    x = np.ascontiguousarray(vectors[sample], np.float32)
    km = faiss.Kmeans(x.shape[1], nlist, niter=12, seed=1234, spherical=True, max_points_per_centroid=40, verbose=False)
    km.train(x)
    proj = None
    if x.shape[1] > 2 * CODE_DIM:
        _, vecs = np.linalg.eigh((x.T.astype(np.float64) @ x) / len(x))
        proj = np.ascontiguousarray(vecs[:, ::-1][:, :CODE_DIM].T, np.float32)
    return np.ascontiguousarray(km.centroids, np.float32), proj


def _assign(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The nearest centroid (largest inner product) of each row."""
    return np.argmax(x @ centroids.T, axis=1).astype(np.int32)


# -- files ----------------------------------------------------------------------------------------------------
_SCHEMA = """
CREATE TABLE info (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE entries (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, row INTEGER NOT NULL, camera INTEGER NOT NULL,
                      modality TEXT NOT NULL, pid INTEGER, t REAL, deleted INTEGER NOT NULL DEFAULT 0, doc TEXT NOT NULL);
CREATE INDEX entries_filter ON entries (deleted, modality, camera);
CREATE INDEX entries_pid ON entries (pid, camera);
CREATE INDEX entries_t ON entries (t);
CREATE INDEX entries_deleted ON entries (row) WHERE deleted = 1;
"""


def _write_new_db(path: Path, head: dict[str, Any], rows: list[tuple]) -> None:
    """Write ``store.sqlite`` whole under a temporary name and rename it in: the rename is the commit."""
    tmp = path / f".{DB}.tmp"
    tmp.unlink(missing_ok=True)
    db = sqlite3.connect(tmp)
    try:
        db.executescript(_SCHEMA)
        header = {"gen": "1", "rows": str(len(rows)), "sorted_rows": "0", "nlist": "0", "deleted_version": "0",
                  "next_id": str(1 + max((r[0] for r in rows), default=-1)), **{k: str(v) for k, v in head.items()}}
        db.executemany("INSERT INTO info VALUES (?, ?)", header.items())
        db.executemany(_INSERT, rows)
        db.commit()
    finally:
        db.close()
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path / DB)
    _fsync_dir(path)


def _connect(db: Path, readonly: bool) -> sqlite3.Connection:
    """A connection in WAL mode (readers never wait for the writer); a reader's is query-only, and opened with
    ``mode=ro`` when the folder cannot be written (the WAL index then cannot be created: SQLite reads without it)."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=rw", uri=True, check_same_thread=False, isolation_level=None, timeout=30)
        if readonly:
            con.execute("PRAGMA query_only=1")
        else:
            con.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError:
        if not readonly:
            raise
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, check_same_thread=False, isolation_level=None, timeout=30)
    con.execute("PRAGMA synchronous=FULL")
    return con


def _remove_other_generations(path: Path, gen: int) -> None:
    for p in path.iterdir():
        parts = p.name.split(".")
        if len(parts) == 3 and parts[0] in ("vectors", "rows", "ivf", "codes") and parts[1].isdigit() and int(parts[1]) != gen:
            p.unlink(missing_ok=True)


def is_store(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder holding a gallery store."""
    return (Path(path) / DB).is_file()


def upgrade(folder: str | os.PathLike[str]) -> GalleryStore:
    """Convert a ``cmft-gallery-index/1`` folder (``embeddings.npy``, ``entries.json``, ``index.json``) into a store
    in place, keeping ids, entries and thumbnails; an HNSW index becomes an approximate (IVF) store. The old
    files are removed only after the store is committed, so a crash leaves one of the two, whole."""
    from cmft.search.index import EMBEDDINGS, ENTRIES, INDEX, GalleryIndex

    folder = Path(folder)
    old = GalleryIndex.load(folder)
    kind = "ivf" if old.kind == "hnsw" else old.kind
    emb = old._emb
    entries = old._entries
    ids = list(range(len(entries)))
    times = [capture_time(e) for e in entries]
    recs = _records(ids, entries, times)
    for p in folder.glob("*.1.*"):
        p.unlink()  # what an upgrade killed before its commit left
    _append(folder / "vectors.1.f32", 0, np.ascontiguousarray(emb, np.float32).tobytes())
    _append(folder / "rows.1.bin", 0, recs.tobytes())
    _write_new_db(folder, {"format": FORMAT, "dim": old.dim, "kind": kind, "meta": json.dumps(old.meta),
                           "upgraded_from": "cmft-gallery-index/1"}, _entry_rows(ids, 0, entries, times))
    for name in (EMBEDDINGS, ENTRIES, INDEX):
        (folder / name).unlink(missing_ok=True)
    return GalleryStore(folder)


def open_store(path: str | os.PathLike[str], readonly: bool = False) -> GalleryStore:
    """Open the store at ``path``; a ``cmft-gallery-index/1`` folder is upgraded first (not when ``readonly``)."""
    from cmft.search.index import INDEX

    path = Path(path)
    if is_store(path):
        store = GalleryStore(path, readonly=readonly)
        if not readonly:
            store.recover()
        return store
    if (path / INDEX).is_file():
        if readonly:
            raise IndexFormatError(f"{path}: a cmft-gallery-index/1 folder; convert it with `cmft index --upgrade --out {path}`")
        return upgrade(path)
    if not path.is_dir():
        raise IndexFormatError(f"{path}: no such index folder (build one with `cmft index`)")
    raise IndexFormatError(f"{path}: not a gallery store ({DB} missing; build one with `cmft index`)")


__all__ = ["FORMAT", "GalleryStore", "IVF_MIN_ROWS", "capture_time", "is_store", "open_store", "parse_time", "upgrade"]
