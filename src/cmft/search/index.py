"""The old gallery format (``cmft-gallery-index/1``, read to migrate it) and an exact in-memory FAISS index: tracklet
embeddings searchable by cosine with modality / camera filters.

An index folder holds three files, written atomically and read without pickle:

* ``embeddings.npy``: ``[N, dim]`` float32, L2-normalised rows (row ``i`` is entry id ``i``);
* ``entries.json``: a list of ``N`` dicts (``key``, ``camera``, ``modality``, ``pid``, ``time``, ``source``,
  ``frames``, ``thumbnail`` and any extra JSON fields), in id order;
* ``index.json``: ``{"format", "dim", "kind", "count", "meta"}``.

FAISS is imported on the first search, never at import time; the FAISS structure is rebuilt from
``embeddings.npy`` when an index is loaded (nothing of FAISS is stored), so the files are the whole index.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cmft.atomic import write_atomic
from cmft.search.gallery import IndexFormatError, check_entry, check_filters, is_int, normalise

FORMAT = "cmft-gallery-index/1"
EMBEDDINGS, ENTRIES, INDEX = "embeddings.npy", "entries.json", "index.json"
KINDS = ("flat", "hnsw")
HNSW_M = 32  # graph degree of the approximate index
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 64  # raised to k when k is larger
EXACT_BELOW = 2048  # a filtered candidate set smaller than this is searched exactly even by an HNSW index


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise IndexFormatError(f"unknown index kind {kind!r}; choose 'flat' (exact) or 'hnsw' (approximate)")
    return kind


class GalleryIndex:
    """Embeddings of tracklets with their entries; ids are 0..N-1 in insertion order."""

    def __init__(self, dim: int, kind: str = "flat", meta: dict | None = None) -> None:
        if not is_int(dim) or dim < 1:
            raise IndexFormatError(f"dim must be a positive integer, got {dim!r}")
        self.dim = int(dim)
        self.kind = _check_kind(kind)
        self.meta: dict = json.loads(json.dumps(meta or {}))
        self._emb = np.zeros((0, self.dim), np.float32)
        self._entries: list[dict] = []
        self._keys: dict[str, int] = {}
        self._modality = np.zeros(0, bool)  # True = rgb, per id: the filter columns
        self._camera = np.zeros(0, np.int64)
        self._faiss: Any = None  # built on the first search, extended by add

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def create(cls, dim: int, kind: str = "flat", meta: dict | None = None) -> GalleryIndex:
        """An empty index: ``kind`` "flat" (exact inner product = cosine) or "hnsw" (approximate, HNSW graph)."""
        return cls(dim, kind, meta)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> GalleryIndex:
        """Read an index folder written by :meth:`save`; every file is checked (no pickle is ever loaded)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise IndexFormatError(f"{folder}: no such index folder (build one with `cmft index`)")
        head_path = folder / INDEX
        head = _read_json(head_path, dict)
        if head.get("format") != FORMAT:
            raise IndexFormatError(f"{head_path}: format {head.get('format')!r} is not {FORMAT!r}")
        dim, count, kind = head.get("dim"), head.get("count"), head.get("kind")
        if not is_int(dim) or dim < 1 or not is_int(count) or count < 0:
            raise IndexFormatError(f"{head_path}: 'dim' and 'count' must be non-negative integers, got {dim!r}, {count!r}")
        if kind not in KINDS:
            raise IndexFormatError(f"{head_path}: unknown kind {kind!r} (expected one of {KINDS})")
        if not isinstance(head.get("meta", {}), dict):
            raise IndexFormatError(f"{head_path}: 'meta' must be an object")
        index = cls(dim, kind, head.get("meta", {}))

        emb_path = folder / EMBEDDINGS
        if not emb_path.is_file():
            raise IndexFormatError(f"{emb_path}: missing")
        try:
            emb = np.load(emb_path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise IndexFormatError(f"{emb_path}: not a plain .npy float array ({e})") from None
        if not isinstance(emb, np.ndarray) or emb.dtype != np.float32 or emb.ndim != 2:
            raise IndexFormatError(f"{emb_path}: expected a 2-D float32 array, got {getattr(emb, 'dtype', type(emb))} "
                                   f"of shape {list(getattr(emb, 'shape', []))}")
        if emb.shape != (count, dim):
            raise IndexFormatError(f"{emb_path}: shape {list(emb.shape)} does not match {INDEX} (count {count}, dim {dim})")
        if not np.isfinite(emb).all():
            raise IndexFormatError(f"{emb_path}: contains NaN or infinite values")

        entries_path = folder / ENTRIES
        entries = _read_json(entries_path, list)
        if len(entries) != count:
            raise IndexFormatError(f"{entries_path}: {len(entries)} entries, but {INDEX} says {count}")
        checked = [check_entry(e, f"{entries_path}: entry {i}") for i, e in enumerate(entries)]
        keys: dict[str, int] = {}
        for i, e in enumerate(checked):
            if e["key"] in keys:
                raise IndexFormatError(f"{entries_path}: entries {keys[e['key']]} and {i} share the key {e['key']!r}")
            keys[e["key"]] = i
        index._emb, index._entries, index._keys = np.ascontiguousarray(emb), checked, keys
        index._columns(checked)
        return index

    def save(self, folder: str | os.PathLike[str]) -> None:
        """Write ``embeddings.npy``, ``entries.json`` and then ``index.json`` (each to a temporary file, then renamed
        over the old one); ``index.json`` holds the count, so a torn update is detected by :meth:`load`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / EMBEDDINGS, lambda fh: np.save(fh, self._emb, allow_pickle=False), binary=True)
        write_atomic(folder / ENTRIES, lambda fh: json.dump(self._entries, fh, indent=1), binary=False)
        head = {"format": FORMAT, "dim": self.dim, "kind": self.kind, "count": len(self), "meta": self.meta}
        write_atomic(folder / INDEX, lambda fh: json.dump(head, fh, indent=1), binary=False)

    # -- contents -----------------------------------------------------------------------------------------
    def add(self, embeddings: np.ndarray, entries: list[dict]) -> list[int]:
        """Append ``[N, dim]`` embeddings (re-normalised) and their entries; returns the new ids. A key already in
        the index (or twice in ``entries``) is an error and nothing is added."""
        emb = normalise(embeddings, self.dim, "embeddings")
        if len(entries) != len(emb):
            raise IndexFormatError(f"add: {len(emb)} embeddings but {len(entries)} entries")
        checked = [check_entry(e, f"add: entry {i}") for i, e in enumerate(entries)]
        seen: set[str] = set()
        for e in checked:
            if e["key"] in self._keys or e["key"] in seen:
                raise IndexFormatError(f"add: key {e['key']!r} is already in the index; nothing was added")
            seen.add(e["key"])
        start = len(self._entries)
        ids = list(range(start, start + len(checked)))
        self._emb = np.concatenate([self._emb, emb]) if start else emb
        self._entries.extend(checked)
        self._keys.update((e["key"], i) for i, e in zip(ids, checked))
        self._columns(checked)
        if self._faiss is not None and len(emb):
            self._faiss.add(emb)
        return ids

    def _columns(self, new: list[dict]) -> None:
        self._modality = np.concatenate([self._modality, np.array([e["modality"] == "rgb" for e in new], bool)])
        self._camera = np.concatenate([self._camera, np.array([e["camera"] for e in new], np.int64)])

    def __len__(self) -> int:
        return len(self._entries)

    def _check_id(self, id: Any) -> int:
        if not is_int(id) or not 0 <= id < len(self):
            raise IndexFormatError(f"no entry with id {id!r} (the index holds ids 0..{len(self) - 1})")
        return int(id)

    def entry(self, id: int) -> dict:
        """The stored entry of ``id`` with ``"id"`` added (a copy)."""
        id = self._check_id(id)
        return {**json.loads(json.dumps(self._entries[id])), "id": id}

    def entries(self) -> list[dict]:
        """Every entry (copies, with ``"id"``) in id order."""
        return [{**e, "id": i} for i, e in enumerate(json.loads(json.dumps(self._entries)))]

    def find(self, key: str) -> int | None:
        """The id of the entry with this key, or None."""
        return self._keys.get(key)

    def embedding(self, id: int) -> np.ndarray:
        """The stored (unit-length, float32) embedding of ``id`` (a copy)."""
        return self._emb[self._check_id(id)].copy()

    # -- search -------------------------------------------------------------------------------------------
    def _candidates(self, modality: str | None, cameras: Sequence[int] | None, exclude: Sequence[int] | None) -> np.ndarray | None:
        """Ids passing the filters, sorted (None: every id)."""
        check_filters(modality, cameras, exclude)
        if exclude is not None:
            bad = [int(i) for i in exclude if not 0 <= i < len(self)]
            if bad:
                raise IndexFormatError(f"exclude names ids {bad[:5]} that are not in the index (0..{len(self) - 1})")
        if modality is None and cameras is None and not exclude:
            return None
        keep = np.ones(len(self), bool)
        if modality is not None:
            keep &= self._modality == (modality == "rgb")
        if cameras is not None:
            keep &= np.isin(self._camera, np.asarray(list(cameras), np.int64))
        if exclude:
            keep[np.asarray(list(exclude), np.int64)] = False
        return np.flatnonzero(keep).astype(np.int64)

    def _build(self) -> Any:
        import faiss

        if self.kind == "flat":
            index = faiss.IndexFlatIP(self.dim)
        else:
            index = faiss.IndexHNSWFlat(self.dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        if len(self):
            index.add(self._emb)
        return index

    def search(self, queries: np.ndarray, k: int = 10, modality: str | None = None, cameras: Sequence[int] | None = None,
               exclude: Sequence[int] | None = None) -> list[list[tuple[int, float]]]:
        """Per query, up to ``k`` ``(id, cosine)`` pairs, best first, among the entries that pass every filter
        (``modality``, ``cameras``: any of these, ``exclude``: ids left out). Filters are applied before the top-k
        is taken, so a query gets ``min(k, candidates)`` results; equal scores are ordered by lower id."""
        if not is_int(k) or k < 1:
            raise IndexFormatError(f"k must be a positive integer, got {k!r}")
        q = normalise(queries, self.dim, "queries")
        cand = self._candidates(modality, cameras, exclude)
        n_cand = len(self) if cand is None else len(cand)
        if n_cand == 0 or len(q) == 0:
            return [[] for _ in range(len(q))]
        k = int(min(k, n_cand))
        if self.kind == "hnsw" and cand is not None and n_cand < EXACT_BELOW:
            return self._exact(q, k, cand)  # a graph walk under a tight filter can miss; a small set is cheap exactly
        if self._faiss is None:
            self._faiss = self._build()
        fetch = min(n_cand, k + 8)
        scores, ids = self._faiss_search(q, fetch, cand)
        out = []
        for i in range(len(q)):
            pairs = self._pairs(ids[i], scores[i])
            if self._cut_unclear(pairs, k, fetch, n_cand):
                pairs = self._search_one(q[i:i + 1], k, n_cand, cand, 2 * fetch)
            if len(pairs) < k:  # an HNSW walk that found too few under a filter: answer exactly
                pairs = self._exact(q[i:i + 1], k, np.arange(len(self), dtype=np.int64) if cand is None else cand)[0]
            out.append(pairs[:k])
        return out

    def _faiss_search(self, q: np.ndarray, fetch: int, cand: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        params = None
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(HNSW_EF_SEARCH, fetch)
        sel = None
        if cand is not None:
            sel = faiss.IDSelectorBatch(cand)
            params = params if params is not None else faiss.SearchParameters()
            params.sel = sel
        scores, ids = self._faiss.search(q, fetch, params=params)
        del sel  # kept alive until the search is done
        return scores, ids

    @staticmethod
    def _pairs(ids: np.ndarray, scores: np.ndarray) -> list[tuple[int, float]]:
        pairs = [(int(i), float(s)) for i, s in zip(ids, scores) if i >= 0]
        pairs.sort(key=lambda p: (-p[1], p[0]))
        return pairs

    @staticmethod
    def _cut_unclear(pairs: list[tuple[int, float]], k: int, fetch: int, n_cand: int) -> bool:
        """True when the k-th score equals the last one fetched: FAISS may have left out an equal-scored lower id."""
        return fetch < n_cand and len(pairs) == fetch and len(pairs) > k and pairs[-1][1] >= pairs[k - 1][1]

    def _search_one(self, q: np.ndarray, k: int, n_cand: int, cand: np.ndarray | None, fetch: int) -> list[tuple[int, float]]:
        while True:
            fetch = min(n_cand, fetch)
            scores, ids = self._faiss_search(q, fetch, cand)
            pairs = self._pairs(ids[0], scores[0])
            if not self._cut_unclear(pairs, k, fetch, n_cand):
                return pairs
            fetch *= 2

    def _exact(self, q: np.ndarray, k: int, cand: np.ndarray) -> list[list[tuple[int, float]]]:
        scores = q @ self._emb[cand].T  # [Q, n_cand]
        out = []
        for row in scores:
            order = np.lexsort((cand, -row))[:k]  # by score descending, then id ascending
            out.append([(int(cand[j]), float(row[j])) for j in order])
        return out

    def __repr__(self) -> str:
        return f"GalleryIndex(dim={self.dim}, kind={self.kind!r}, entries={len(self)})"


def _read_json(path: Path, kind: type) -> Any:
    if not path.is_file():
        raise IndexFormatError(f"{path}: missing")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IndexFormatError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(value, kind):
        raise IndexFormatError(f"{path}: expected a JSON {'object' if kind is dict else 'list'}, got {type(value).__name__}")
    return value


__all__ = ["GalleryIndex", "IndexFormatError", "FORMAT", "KINDS"]
