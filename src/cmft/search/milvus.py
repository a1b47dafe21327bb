"""The gallery on Milvus: the :class:`~cmft.search.store.GalleryStore` API over a Milvus collection, for archives
that outgrow one machine. One client code for a Milvus server or cluster (``http://host:19530``,
``milvus://host:19530``) and for Milvus Lite, the embedded one in a local file (``gallery.db``), which the tests
use. Needs the ``milvus`` extra (``pymilvus``, ``milvus-lite``), imported when a Milvus gallery is opened.

Differences from the folder store, by design of a shared server: entry ids are derived from the key (63 bits of
its SHA-256), so re-running an interrupted add upserts the same rows (no duplicates, no id counter to keep
consistent across clients); an add is one upsert per batch; thumbnails live in a local folder beside the
database file (Milvus Lite) or in ``CMFT_MILVUS_THUMBS`` / ``./<collection>`` (a server).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cmft.search.gallery import (
    Hook,
    IndexFormatError,
    capture_time,
    check_entry,
    check_filters,
    check_k,
    check_kind,
    is_int,
    is_milvus,
    normalise,
    open_gallery,
    parse_time,
    time_range,
)

COLLECTION = "cmft_gallery"
NO_TIME = -1.0e18  # Milvus has no NULL in a filtered scalar field: entries without a capture time hold this
NO_PID = -(1 << 62)
NLIST = 1024  # IVF lists of an approximate collection
NPROBE = 96
KEY_LEN = 4096


def key_id(key: str) -> int:
    """The entry id of a key: the first 63 bits of its SHA-256 (stable across runs and clients)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") >> 1


def _quote(text: str) -> str:
    return json.dumps(text)  # a double-quoted string literal with escapes, as Milvus expressions take


class MilvusGallery:
    """A gallery in a Milvus collection; see the module docstring. Same methods as ``GalleryStore``."""

    def __init__(self, uri: str, readonly: bool = False, collection: str = COLLECTION) -> None:
        try:
            from pymilvus import MilvusClient
        except ImportError:
            raise IndexFormatError(f"{uri}: a Milvus gallery needs pymilvus (pip install 'cmft[milvus]')") from None
        self.uri, self.readonly, self.collection = str(uri), readonly, collection
        local = not self.uri.startswith(("http://", "https://", "milvus://", "tcp://"))
        if local and not readonly:
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
        if local and readonly and not Path(self.uri).exists():
            raise IndexFormatError(f"{self.uri}: no such Milvus Lite file (build one with `cmft index --store {self.uri}`)")
        address = self.uri.replace("milvus://", "http://", 1)
        try:
            self.client = MilvusClient(address)
        except Exception as e:  # noqa: BLE001 - pymilvus raises its own and grpc errors
            raise IndexFormatError(f"{self.uri}: cannot connect to Milvus ({e})") from None
        # thumbnails: beside a Milvus Lite file, else in a local folder of the client's choosing
        self.path = (Path(self.uri).parent / f"{Path(self.uri).stem}.files" if local
                     else Path(os.environ.get("CMFT_MILVUS_THUMBS", f"./{collection}")))
        self.kind, self.dim, self.meta = "flat", 0, {}
        if self.client.has_collection(collection):
            self._read_head()

    # -- creation -----------------------------------------------------------------------------------------
    @classmethod
    def create(cls, uri: str, dim: int, kind: str = "flat", meta: dict | None = None, collection: str = COLLECTION) -> MilvusGallery:
        """A new empty collection (``kind`` "flat": exact FLAT index; "ivf": IVF_FLAT, nprobe ``NPROBE``)."""
        from pymilvus import DataType

        kind = check_kind(kind)
        g = cls(uri, collection=collection)
        if g.client.has_collection(collection):
            raise IndexFormatError(f"{uri}: already holds a gallery collection {collection!r}")
        head = g.client.create_schema(auto_id=False, enable_dynamic_field=False)  # the header: one row
        head.add_field("id", DataType.INT64, is_primary=True)
        head.add_field("head", DataType.JSON)
        head.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector in every collection
        params = g.client.prepare_index_params()
        params.add_index("vector", index_type="FLAT", metric_type="IP")
        g.client.create_collection(f"{collection}_head", schema=head, index_params=params)
        g.client.upsert(f"{collection}_head", [{"id": 0, "vector": [1.0, 0.0], "head": {
            "format": "cmft-gallery-milvus/1", "dim": int(dim), "kind": kind, "meta": meta or {}}}])
        schema = g.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("key", DataType.VARCHAR, max_length=KEY_LEN)
        schema.add_field("camera", DataType.INT64)
        schema.add_field("rgb", DataType.BOOL)
        schema.add_field("pid", DataType.INT64)
        schema.add_field("t", DataType.DOUBLE)
        schema.add_field("doc", DataType.JSON)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(dim))
        params = g.client.prepare_index_params()
        if kind == "flat":
            params.add_index("vector", index_type="FLAT", metric_type="IP")
        else:
            params.add_index("vector", index_type="IVF_FLAT", metric_type="IP", params={"nlist": NLIST})
        g.client.create_collection(collection, schema=schema, index_params=params)
        g._read_head()
        return g

    def _read_head(self) -> None:
        got = (self.client.get(f"{self.collection}_head", ids=[0], output_fields=["head"])
               if self.client.has_collection(f"{self.collection}_head") else [])
        head = got[0]["head"] if got else {}
        head = json.loads(head) if isinstance(head, str) else head
        if head.get("format") != "cmft-gallery-milvus/1":
            raise IndexFormatError(f"{self.uri}: collection {self.collection!r} is not a cmft gallery")
        self.dim, self.kind, self.meta = int(head["dim"]), str(head["kind"]), dict(head.get("meta") or {})

    def _exists(self) -> None:
        if not self.dim:
            raise IndexFormatError(f"{self.uri}: no gallery collection {self.collection!r} (build one with `cmft index`)")

    # -- entries ------------------------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Milvus serves what is committed; nothing to reload."""
        return False

    def view(self) -> MilvusGallery:
        """This gallery: Milvus has no client-side version to pin (each call sees what the server has committed)."""
        return self

    def __len__(self) -> int:
        self._exists()
        got = self.client.query(self.collection, filter="id >= 0", output_fields=["count(*)"])
        return int(got[0]["count(*)"])

    @property
    def next_id(self) -> int:
        return 0  # ids come from keys, not a counter

    def _rows(self, expr: str, fields: list[str]) -> list[dict]:
        self._exists()
        out: list[dict] = []
        it = self.client.query_iterator(self.collection, filter=expr, output_fields=fields, batch_size=1000)
        try:
            while batch := it.next():
                out.extend(batch)
        finally:
            it.close()
        return out

    @staticmethod
    def _entry(row: dict) -> dict:
        doc = row["doc"] if isinstance(row["doc"], dict) else json.loads(row["doc"])
        return {**doc, "id": int(row["id"])}

    def by_ids(self, ids: Sequence[int]) -> list[dict]:
        """The entries of ``ids`` (with ``"id"``), in that order; ids not in the gallery are left out."""
        self._exists()
        got = self.client.get(self.collection, ids=[int(i) for i in ids], output_fields=["id", "doc"]) if ids else []
        by = {int(r["id"]): self._entry(r) for r in got}
        return [by[int(i)] for i in ids if int(i) in by]

    def entry(self, id: int) -> dict:
        """The stored entry of ``id`` with ``"id"`` added."""
        self._exists()
        got = self.client.get(self.collection, ids=[int(id)], output_fields=["id", "doc"]) if is_int(id) else []
        if not got:
            raise IndexFormatError(f"no entry with id {id!r} in the gallery")
        return self._entry(got[0])

    def iter_entries(self, batch: int = 1000) -> Iterator[dict]:
        """Every entry (with ``"id"``), in id order."""
        yield from sorted((self._entry(r) for r in self._rows("id >= 0", ["id", "doc"])), key=lambda e: e["id"])

    def entries(self) -> list[dict]:
        return list(self.iter_entries())

    def page(self, offset: int = 0, limit: int = 50, modality: str | None = None, camera: int | None = None,
             pid: int | None = None) -> tuple[int, list[dict]]:
        expr = self._filter(modality, [camera] if camera is not None else None, None, None, None)
        if pid is not None:
            expr += f" and pid == {int(pid)}"
        ids = sorted(int(r["id"]) for r in self._rows(expr, ["id"]))
        picked = ids[offset:offset + limit]
        rows = {int(r["id"]): r for r in self.client.get(self.collection, ids=picked, output_fields=["id", "doc"])} if picked else {}
        return len(ids), [self._entry(rows[i]) for i in picked]

    def summary(self) -> dict[str, Any]:
        rows = self._rows("id >= 0", ["camera", "rgb", "pid", "doc"])
        docs = [r["doc"] if isinstance(r["doc"], dict) else json.loads(r["doc"]) for r in rows]
        return {"modalities": {"rgb": sum(bool(r["rgb"]) for r in rows), "ir": sum(not r["rgb"] for r in rows)},
                "cameras": sorted({int(r["camera"]) for r in rows}),
                "identities": len({int(r["pid"]) for r in rows if int(r["pid"]) != NO_PID}),
                "datasets": sorted({str(d["dataset"]) for d in docs if d.get("dataset")})}

    def counts(self) -> list[tuple[str, int, int]]:
        """``(modality, camera, entries)`` per modality and camera."""
        tally: dict[tuple[str, int], int] = {}
        for r in self._rows("id >= 0", ["camera", "rgb"]):
            k = ("rgb" if r["rgb"] else "ir", int(r["camera"]))
            tally[k] = tally.get(k, 0) + 1
        return [(m, c, n) for (m, c), n in sorted(tally.items())]

    def find(self, key: str) -> int | None:
        self._exists()
        got = self.client.get(self.collection, ids=[key_id(key)], output_fields=["id", "key"])
        return int(got[0]["id"]) if got and got[0]["key"] == key else None

    def find_keys(self, keys: Sequence[str]) -> dict[str, int]:
        """``{key: id}`` of the given keys that are in the gallery."""
        self._exists()
        by_id = {key_id(k): k for k in keys}
        got = self.client.get(self.collection, ids=list(by_id), output_fields=["id", "key"]) if by_id else []
        return {r["key"]: int(r["id"]) for r in got if by_id.get(int(r["id"])) == r["key"]}

    def count_prefix(self, prefix: str) -> int:
        """How many entries have a key that starts with ``prefix``."""
        esc = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return len(self._rows(f"key like {_quote(esc + '%')}", ["id"]))

    def find_suffix(self, tail: str, limit: int = 4) -> list[int]:
        esc = tail.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return sorted(int(r["id"]) for r in self._rows(f"key like {_quote('%' + esc)}", ["id"]))[:limit]

    def ids_where(self, pid: int, camera: int) -> list[int]:
        return sorted(int(r["id"]) for r in self._rows(f"pid == {int(pid)} and camera == {int(camera)}", ["id"]))

    def embedding(self, id: int) -> np.ndarray:
        self._exists()
        got = self.client.get(self.collection, ids=[int(id)], output_fields=["vector"]) if is_int(id) else []
        if not got:
            raise IndexFormatError(f"no entry with id {id!r} in the gallery")
        return np.asarray(got[0]["vector"], np.float32)

    # -- search -------------------------------------------------------------------------------------------
    def _filter(self, modality: str | None, cameras: Sequence[int] | None, exclude: Sequence[int] | None,
                since: Any, until: Any) -> str:
        check_filters(modality, cameras, exclude)
        parts = ["id >= 0"]
        if modality is not None:
            parts.append(f"rgb == {'true' if modality == 'rgb' else 'false'}")
        if cameras is not None:
            parts.append(f"camera in [{', '.join(str(int(c)) for c in cameras)}]")
        lo, hi = time_range(since, until)
        if lo is not None:
            parts.append(f"t >= {lo!r}")
        if hi is not None:
            parts.append(f"t <= {hi!r} and t > {NO_TIME!r}")
        if exclude:
            parts.append(f"id not in [{', '.join(str(int(i)) for i in exclude)}]")
        return " and ".join(parts)

    def search(self, queries: np.ndarray, k: int = 10, modality: str | None = None, cameras: Sequence[int] | None = None,
               exclude: Sequence[int] | None = None, since: Any = None, until: Any = None,
               exact: bool = False) -> list[list[tuple[int, float]]]:
        """As :meth:`GalleryStore.search`, with the filter pushed down to Milvus; equal scores go to the lower id
        among the results Milvus returns."""
        k = check_k(k)
        q = normalise(queries, self.dim, "queries")
        expr = self._filter(modality, cameras, exclude, since, until)
        if len(q) == 0:
            return []
        params: dict[str, Any] = {"metric_type": "IP"}
        if self.kind == "ivf":
            params["params"] = {"nprobe": NLIST if exact else NPROBE}
        res = self.client.search(self.collection, data=[row.tolist() for row in q], limit=int(k), filter=expr,
                                 output_fields=["id"], search_params=params)
        out = []
        for hits in res:
            pairs = [(int(h["id"]), float(h["distance"])) for h in hits]
            out.append(sorted(pairs, key=lambda p: (-p[1], p[0]))[:k])
        return out

    # -- writing ------------------------------------------------------------------------------------------
    def _check_writable(self) -> None:
        if self.readonly:
            raise IndexFormatError(f"{self.uri}: opened read-only")
        self._exists()

    def add(self, embeddings: np.ndarray, entries: list[dict], hook: Hook | None = None,
            skip_existing: bool = False) -> list[int]:
        """Upsert ``[N, dim]`` embeddings (re-normalised) and their entries; returns their ids (from the keys).
        A key already in the gallery (or twice here) is an error and nothing is added."""
        self._check_writable()
        emb = normalise(embeddings, self.dim, "embeddings")
        if len(entries) != len(emb):
            raise IndexFormatError(f"add: {len(emb)} embeddings but {len(entries)} entries")
        checked = [check_entry(e, f"add: entry {i}") for i, e in enumerate(entries)]
        for e in checked:
            if len(e["key"].encode("utf-8")) > KEY_LEN:
                raise IndexFormatError(f"add: key {e['key'][:60]!r}... is longer than {KEY_LEN} bytes")
        times = [capture_time(e) for e in checked]
        ids = [key_id(e["key"]) for e in checked]
        if len(set(ids)) != len(ids):
            raise IndexFormatError("add: a key appears twice in this add; nothing was added")
        present = self.client.get(self.collection, ids=ids, output_fields=["id", "key"]) if ids else []
        if present and not skip_existing:
            raise IndexFormatError(f"add: key {present[0]['key']!r} is already in the gallery; nothing was added")
        if present:
            have = {int(r["id"]) for r in present}
            keep = [j for j, i in enumerate(ids) if i not in have]
            emb, checked, times, ids = emb[keep], [checked[j] for j in keep], [times[j] for j in keep], [ids[j] for j in keep]
        if hook is not None:
            hook(ids, checked)
        rows = [{"id": i, "key": e["key"], "camera": e["camera"], "rgb": e["modality"] == "rgb",
                 "pid": NO_PID if e["pid"] is None else e["pid"], "t": NO_TIME if t is None else t, "doc": e,
                 "vector": v.tolist()} for i, e, t, v in zip(ids, checked, times, emb)]
        if rows:
            self.client.upsert(self.collection, rows)
        return ids

    def delete(self, ids: Sequence[int] = (), keys: Sequence[str] = (), before: Any = None) -> int:
        """Delete entries by id, key, or capture time before ``before``; returns how many."""
        self._check_writable()
        cut = parse_time(before, "before")
        n = 0
        targets = sorted({int(i) for i in ids} | {key_id(k) for k in keys})
        if targets:
            found = self.client.get(self.collection, ids=targets, output_fields=["id"])
            if found:
                self.client.delete(self.collection, ids=[int(r["id"]) for r in found])
                n += len(found)
        if cut is not None:
            old = [int(r["id"]) for r in self._rows(f"t < {cut!r} and t > {NO_TIME!r}", ["id"])]
            if old:
                self.client.delete(self.collection, ids=old)
                n += len(old)
        return n

    def needs_compaction(self) -> bool:
        return False  # Milvus compacts its own segments

    def compact(self, progress: Any = None) -> None:
        self._check_writable()
        self.client.compact(self.collection)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> MilvusGallery:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MilvusGallery({self.uri!r}, collection={self.collection!r}, dim={self.dim}, kind={self.kind!r})"


__all__ = ["MilvusGallery", "is_milvus", "key_id", "open_gallery"]
