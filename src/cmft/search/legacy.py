"""Readers of the two old gallery formats, kept only to migrate them into a LanceDB store, losslessly and in place.

* ``cmft-gallery-index/1``: ``index.json``, ``entries.json``, ``embeddings.npy`` (:class:`~cmft.search.index.GalleryIndex`);
* ``cmft-gallery-store/2``: ``store.sqlite`` (entries and header), ``vectors.<gen>.f32`` (rows), plus row, IVF and
  code files that only served its own search.

Ids, entries (thumbnail paths included), embeddings bit for bit, the kind and the model's meta are kept. The
migration inserts by key (a re-run after a kill adds what is missing, nothing twice) and removes the old files only
after the store holds every entry, so a crash leaves the old files whole and the next ``cmft index`` finishes it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cmft.search.gallery import IndexFormatError, check_entry, check_kind

V1, V2 = "cmft-gallery-index/1", "cmft-gallery-store/2"
V2_DB = "store.sqlite"
BATCH = 10_000


def old_format(folder: Path) -> str | None:
    """The old format ``folder`` holds (its files are still there), or None."""
    from cmft.search.index import INDEX

    if (folder / V2_DB).is_file():
        return V2
    if (folder / INDEX).is_file():
        return V1
    return None


def _read_v1(folder: Path) -> tuple[int, str, dict, Iterator[tuple[list[int], list[dict], np.ndarray]], int]:
    from cmft.search.index import GalleryIndex

    old = GalleryIndex.load(folder)

    def batches() -> Iterator[tuple[list[int], list[dict], np.ndarray]]:
        for start in range(0, len(old), BATCH):
            ids = list(range(start, min(len(old), start + BATCH)))
            yield ids, [old._entries[i] for i in ids], old._emb[start:start + len(ids)]

    return old.dim, old.kind, old.meta, batches(), len(old)


def _read_v2(folder: Path) -> tuple[int, str, dict, Iterator[tuple[list[int], list[dict], np.ndarray]], int]:
    path = folder / V2_DB
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        head = dict(db.execute("SELECT name, value FROM info").fetchall())
        rows = db.execute("SELECT id, row, doc FROM entries WHERE deleted = 0 ORDER BY id").fetchall()
        db.close()
    except sqlite3.DatabaseError as e:
        raise IndexFormatError(f"{path}: not a readable gallery store ({e})") from None
    if head.get("format") != V2:
        raise IndexFormatError(f"{path}: format {head.get('format')!r} is not {V2!r}")
    try:
        dim, gen, count = int(head["dim"]), int(head["gen"]), int(head["rows"])
        kind, meta = str(head["kind"]), json.loads(head.get("meta", "{}"))
    except (KeyError, ValueError) as e:
        raise IndexFormatError(f"{path}: malformed header ({e})") from None
    vec_path = folder / f"vectors.{gen}.f32"
    if count and (not vec_path.is_file() or vec_path.stat().st_size < count * dim * 4):
        raise IndexFormatError(f"{vec_path}: shorter than the {count} rows {V2_DB} has committed")
    vectors = np.memmap(vec_path, np.float32, "r", shape=(count, dim)) if count else np.zeros((0, dim), np.float32)

    def batches() -> Iterator[tuple[list[int], list[dict], np.ndarray]]:
        for start in range(0, len(rows), BATCH):
            part = rows[start:start + BATCH]
            if any(not 0 <= r < count for _, r, _ in part):
                raise IndexFormatError(f"{path}: an entry points past the {count} committed rows")
            docs = []
            for i, _, d in part:
                try:
                    docs.append(json.loads(d))
                except ValueError:
                    raise IndexFormatError(f"{path}: entry {i} is not valid JSON") from None
            yield [int(i) for i, _, _ in part], docs, np.asarray(vectors[[r for _, r, _ in part]], np.float32)

    return dim, kind, meta, batches(), len(rows)


def migrate(folder: Path) -> Any:
    """Convert the old-format gallery in ``folder`` into a LanceDB store in place and return it opened."""
    from cmft.search import store as lance_store

    fmt = old_format(folder)
    if fmt is None:
        raise IndexFormatError(f"{folder}: not a gallery folder of an old format")
    dim, kind, meta, batches, total = (_read_v1 if fmt == V1 else _read_v2)(folder)
    st = lance_store.GalleryStore.create(folder, dim, check_kind(kind), meta={**meta, "migrated_from": fmt}, exist_ok=True)
    if st.dim != dim:
        raise IndexFormatError(f"{folder}: holds both a {dim}-d {fmt} gallery and a {st.dim}-d store; move one away")
    for ids, docs, emb in batches:
        checked = [check_entry(e, f"{folder}: entry {i}") for i, e in zip(ids, docs)]
        emb = np.ascontiguousarray(emb, np.float32)
        if not np.isfinite(emb).all():
            raise IndexFormatError(f"{folder}: the {fmt} embeddings hold NaN or infinite values")
        table = lance_store.arrow_rows(ids, checked, emb, st._tbl.schema)
        st._write(lambda tbl, t=table: tbl.merge_insert("key").when_not_matched_insert_all().execute(lance_store._stamped(t)))
    st.refresh()
    if len(st) < total:
        raise IndexFormatError(f"{folder}: the migration holds {len(st)} of {total} entries; the old files are kept")
    _remove_old_files(folder, fmt)
    return st


def _remove_old_files(folder: Path, fmt: str) -> None:
    """Remove the old format's mark first (from then on the folder is a store), then its other files."""
    from cmft.search.index import INDEX

    (folder / (INDEX if fmt == V1 else V2_DB)).unlink(missing_ok=True)
    tidy(folder)


def tidy(folder: Path) -> None:
    """Remove what a migration killed after removing the old format's mark left of its files."""
    from cmft.search.index import EMBEDDINGS, ENTRIES

    if old_format(folder) is not None:
        return
    for p in folder.iterdir():
        parts = p.name.split(".")
        if len(parts) == 3 and parts[0] in ("vectors", "rows", "ivf", "codes") and parts[1].isdigit():
            p.unlink(missing_ok=True)
    for name in (EMBEDDINGS, ENTRIES, f"{V2_DB}-wal", f"{V2_DB}-shm", "write.lock", f".{V2_DB}.tmp"):
        (folder / name).unlink(missing_ok=True)


__all__ = ["V1", "V2", "migrate", "old_format", "tidy"]
