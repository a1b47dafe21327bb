"""The gallery store: search equals brute force under every filter (time range included), ids are stable through
deletion and compaction, the approximate search finds the exact top-10, a torn write is invisible, concurrent
readers see commits, and an old index folder converts with ids, entries and thumbnails kept."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import cmft.search.store as store_mod
from cmft.search import GalleryIndex, IndexFormatError
from cmft.search.store import GalleryStore, open_store, parse_time

DAY = 86400.0
T0 = parse_time("2026-11-01T00:00:00Z")


def _entries(n: int, start: int = 0, cameras: int = 4, prefix: str = "t") -> list[dict]:
    return [{"key": f"{prefix}{i}", "camera": i % cameras + 1, "modality": "rgb" if i % 2 else "ir", "pid": i // 4,
             "time": None, "captured": f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:00:00Z", "source": f"/x/{prefix}{i}",
             "frames": [f"/x/{prefix}{i}/{f}.jpg" for f in range(3)], "thumbnail": None}
            for i in range(start, start + n)]


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute(emb: dict[int, np.ndarray], ents: dict[int, dict], q: np.ndarray, k: int, modality=None, cameras=None,
           exclude=(), since=None, until=None) -> list[int]:
    lo, hi = parse_time(since), parse_time(until)
    keep = [i for i, e in ents.items() if (modality is None or e["modality"] == modality)
            and (cameras is None or e["camera"] in cameras) and i not in set(exclude)
            and (lo is None or parse_time(e["captured"]) >= lo) and (hi is None or parse_time(e["captured"]) <= hi)]
    if not keep:
        return []
    s = np.stack([emb[i] for i in keep]) @ q
    return [keep[j] for j in np.lexsort((np.array(keep), -s))[:k]]


FILTERS = [{}, {"modality": "rgb"}, {"modality": "ir", "cameras": [2]}, {"cameras": [1, 3], "exclude": [0, 5, 9]},
           {"since": "2026-11-05", "until": "2026-11-12T12:00:00+00:00"}, {"modality": "ir", "since": T0 + 20 * DAY}]


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_search_equals_brute_force_through_adds_deletes_and_compaction(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(0)
    st = GalleryStore.create(tmp_path / "g", 16, kind, meta={"note": "x"})
    x = _unit(rng, 120, 16)
    ents = _entries(120)
    assert st.add(x[:50] * 3, ents[:50]) == list(range(50))  # re-normalised
    assert st.add(x[50:], ents[50:]) == list(range(50, 120))
    emb, live = {i: x[i] for i in range(120)}, {i: ents[i] for i in range(120)}
    q = _unit(rng, 3, 16)

    def check() -> None:
        for kw in FILTERS:
            got = st.search(q, k=7, **kw)
            for qi in range(len(q)):
                assert [i for i, _ in got[qi]] == _brute(emb, live, q[qi], 7, **kw), kw
                assert all(abs(s - float(emb[i] @ q[qi])) < 1e-5 for i, s in got[qi])

    check()
    assert st.delete(ids=[1, 2], keys=["t3"]) == 3 and st.delete(ids=[1]) == 0
    n_old = sum(parse_time(e["captured"]) < T0 + 3 * DAY for e in live.values() if e["key"] not in ("t1", "t2", "t3"))
    assert st.delete(before="2026-11-04") == n_old  # retention by capture time
    for i in [i for i, e in live.items() if i in (1, 2, 3) or parse_time(e["captured"]) < T0 + 3 * DAY]:
        del live[i]
    assert len(st) == len(live) and st.find("t2") is None
    with pytest.raises(IndexFormatError, match="no entry with id 2"):
        st.entry(2)
    check()
    st.compact()
    assert len(st) == len(live) and [e["id"] for e in st.entries()] == sorted(live)  # ids survive compaction
    assert st.entry(50)["key"] == "t50" and np.array_equal(st.embedding(50), x[50])
    check()
    assert st.add(x[:2], _entries(2, prefix="n")) == [120, 121]  # ids are never reused
    emb.update({120: x[0], 121: x[1]})
    live.update({120: _entries(2, prefix="n")[0], 121: _entries(2, prefix="n")[1]})
    check()


def test_refused_adds_change_nothing(tmp_path: Path) -> None:
    st = GalleryStore.create(tmp_path / "g", 8)
    st.add(_unit(np.random.default_rng(1), 3, 8), _entries(3))
    for emb, ents, match in ((np.ones((1, 9), np.float32), _entries(1, prefix="a"), r"shape \[N, 8\]"),
                             (np.zeros((1, 8), np.float32), _entries(1, prefix="z"), "all zeros"),
                             (np.ones((1, 8), np.float32), _entries(1), "already in the store"),
                             (np.ones((2, 8), np.float32), _entries(1, prefix="d") * 2, "twice"),
                             (np.ones((1, 8), np.float32), [{**_entries(1, prefix="c")[0], "captured": "yesterday"}], "ISO 8601")):
        with pytest.raises(IndexFormatError, match=match):
            st.add(emb, ents)
    assert len(st) == 3 and st.next_id == 3
    with pytest.raises(IndexFormatError, match="not an ISO 8601 time"):
        st.search(np.ones(8, np.float32), since="last week")
    with pytest.raises(IndexFormatError, match="not in the store"):
        st.search(np.ones(8, np.float32), exclude=[7])


def test_hook_failure_and_torn_rows_leave_the_old_content(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    st = GalleryStore.create(tmp_path / "g", 8)
    st.add(_unit(rng, 5, 8), _entries(5))

    def boom(ids: list[int], entries: list[dict]) -> None:
        raise RuntimeError("killed while writing thumbnails")

    with pytest.raises(RuntimeError):
        st.add(_unit(rng, 2, 8), _entries(2, start=5), hook=boom)
    assert len(st) == 5
    # a writer killed after appending its rows, before its commit: bytes past the committed end
    with open(tmp_path / "g" / "vectors.1.f32", "ab") as fh:
        fh.write(b"\x7f" * 8 * 4 * 3)
    with open(tmp_path / "g" / "rows.1.bin", "ab") as fh:
        fh.write(b"\x01" * 25 * 3)
    reader = GalleryStore(tmp_path / "g", readonly=True)
    assert len(reader) == 5 and len(reader.search(np.ones(8, np.float32), k=50)[0]) == 5
    assert st.add(_unit(rng, 2, 8), _entries(2, start=5)) == [5, 6]  # the next writer cuts the torn rows off
    assert (tmp_path / "g" / "vectors.1.f32").stat().st_size == 7 * 8 * 4
    assert reader.refresh() and len(reader) == 7


def test_readers_see_commits_and_cannot_write(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    st = GalleryStore.create(tmp_path / "g", 8)
    st.add(_unit(rng, 4, 8), _entries(4))
    reader = open_store(tmp_path / "g", readonly=True)
    new = _unit(rng, 1, 8)
    st.add(new, _entries(1, start=4))
    assert reader.search(new, k=1)[0][0][0] == 4  # a commit is seen on the next refresh (search refreshes)
    st.delete(ids=[4])
    reader.refresh()
    assert reader.find("t4") is None and all(i != 4 for i, _ in reader.search(new, k=5)[0])
    with pytest.raises(IndexFormatError, match="read-only"):
        reader.add(new, _entries(1, start=9))


def test_approximate_search_finds_the_exact_top10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wide embeddings with structure (people on a low-dimensional appearance space): after a compaction trains the
    lists and the PCA codes, the approximate top-10 holds >= 0.95 of the exact one, with and without filters."""
    monkeypatch.setattr(store_mod, "IVF_MIN_ROWS", 2000)
    monkeypatch.setattr(store_mod, "EXACT_BELOW", 200)
    rng = np.random.default_rng(4)
    dim, n = 640, 6000
    basis = rng.normal(size=(16, dim)).astype(np.float32)
    person = (rng.normal(size=(n // 4, 16)) @ basis) / np.sqrt(dim) + 0.5 * _unit(rng, n // 4, dim)
    x = np.repeat(person, 4, axis=0) + 0.6 * _unit(rng, n, dim)
    st = GalleryStore.create(tmp_path / "g", dim, "ivf")
    st.add(x, _entries(n, cameras=10))
    assert st.needs_compaction()
    st.compact()
    snap = st._view()
    assert snap.centroids is not None and snap.codes is not None and snap.codes.shape == (n, store_mod.CODE_DIM)
    st.add(x[:100] + 0.1, _entries(100, prefix="tail", cameras=10))  # rows past the lists: assigned on add
    q = x[rng.choice(n, 40, replace=False)] + 0.6 * _unit(rng, 40, dim)
    for kw in ({}, {"modality": "ir"}, {"modality": "rgb", "cameras": [1, 2, 3]}):
        exact = st.search(q, k=10, exact=True, **kw)
        approx = st.search(q, k=10, **kw)
        recall = np.mean([len({i for i, _ in a} & {i for i, _ in e}) / 10 for a, e in zip(approx, exact)])
        assert recall >= 0.95, (kw, recall)
        assert all(a[0][1] <= e[0][1] + 1e-5 for a, e in zip(approx, exact))  # never better than exact


def test_old_index_folder_upgrades_with_ids_entries_and_thumbnails(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    old = GalleryIndex.create(12, "hnsw", meta={"checkpoint": "c.pt"})
    x = _unit(rng, 30, 12)
    old.add(x, _entries(30))
    folder = tmp_path / "old"
    old.save(folder)
    (folder / "thumbs").mkdir()
    (folder / "thumbs" / "3.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(IndexFormatError, match="cmft index --upgrade"):
        open_store(folder, readonly=True)  # a reader never converts
    st = open_store(folder)
    assert st.kind == "ivf" and st.meta == {"checkpoint": "c.pt"} and len(st) == 30
    assert st.entries() == old.entries() and np.array_equal(st.embedding(7), old.embedding(7))
    names = {p.name for p in folder.iterdir()}
    assert {"rows.1.bin", "store.sqlite", "vectors.1.f32", "thumbs"} <= names
    assert not names & {"embeddings.npy", "entries.json", "index.json"}  # the old files go once the store is committed
    assert (folder / "thumbs" / "3.jpg").is_file()
    q = x[:4]
    assert [[i for i, _ in r] for r in st.search(q, k=5, modality="ir")] == [[i for i, _ in r] for r in old.search(q, k=5, modality="ir")]


def test_bad_store_files_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match="no such index folder"):
        open_store(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexFormatError, match="not a gallery store"):
        open_store(tmp_path / "empty")
    st = GalleryStore.create(tmp_path / "g", 8)
    st.add(_unit(np.random.default_rng(6), 4, 8), _entries(4))
    st.close()
    os.truncate(tmp_path / "g" / "vectors.1.f32", 8 * 4 * 2)
    with pytest.raises(IndexFormatError, match=r"vectors\.1\.f32: shorter than the 4 rows"):
        GalleryStore(tmp_path / "g", readonly=True)
    db = sqlite3.connect(tmp_path / "g" / "store.sqlite")
    db.execute("UPDATE info SET value = 'other/9' WHERE name = 'format'")
    db.commit()
    db.close()
    with pytest.raises(IndexFormatError, match="format 'other/9'"):
        GalleryStore(tmp_path / "g", readonly=True)
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "store.sqlite").write_bytes(b"garbage" * 200)
    with pytest.raises(IndexFormatError, match="store.sqlite: not a readable gallery store"):
        open_store(tmp_path / "h")
    assert json.loads(json.dumps(parse_time("2026-11-30"))) == parse_time("2026-11-30T00:00:00Z")
