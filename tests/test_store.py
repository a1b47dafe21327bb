"""The gallery store on LanceDB: search equals brute force under every filter (time range included) through adds,
deletes and optimize; ids come from keys; refused input changes nothing; a deleted key can be re-added at once; a
pinned view never moves; the approximate search finds the exact top-10; damage is reported, naming the store; both
old formats migrate losslessly."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import cmft.search.store as store_mod
from cmft.search import GalleryIndex, IndexFormatError
from cmft.search.gallery import GalleryDamagedError, key_id, parse_time
from cmft.search.store import GalleryStore, open_store

pytest.importorskip("lancedb", reason="the gallery store needs the 'serve' extra")

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


def _brute(emb: dict[str, np.ndarray], ents: dict[str, dict], q: np.ndarray, k: int, modality=None, cameras=None,
           exclude=(), since=None, until=None) -> list[str]:
    """The exact top-k keys, written plainly: filters on the entries, dot products, ties to the lower id."""
    lo, hi = parse_time(since), parse_time(until, end_of_day=True)
    keep = [key for key, e in ents.items() if (modality is None or e["modality"] == modality)
            and (cameras is None or e["camera"] in cameras) and key_id(key) not in set(exclude)
            and (lo is None or parse_time(e["captured"]) >= lo) and (hi is None or parse_time(e["captured"]) <= hi)]
    if not keep:
        return []
    s = np.stack([emb[key] for key in keep]) @ q
    return [keep[j] for j in np.lexsort((np.array([key_id(key) for key in keep]), -s))[:k]]


FILTERS = [{}, {"modality": "rgb"}, {"modality": "ir", "cameras": [2]}, {"cameras": [1, 3], "exclude": [key_id("t0"), key_id("t5")]},
           {"since": "2026-11-05", "until": "2026-11-12T12:00:00+00:00"}, {"modality": "ir", "since": T0 + 20 * DAY},
           {"until": "2026-11-04"}]


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_search_equals_brute_force_through_adds_deletes_and_optimize(tmp_path: Path, kind: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "EXACT_BELOW", 20)  # both exact paths: LanceDB's filtered scan and the in-memory one
    rng = np.random.default_rng(0)
    st = GalleryStore.create(tmp_path / "g", 16, kind, meta={"note": "x"})
    x = _unit(rng, 120, 16)
    ents = _entries(120)
    assert st.add(x[:50] * 3, ents[:50]) == [key_id(f"t{i}") for i in range(50)]  # re-normalised; ids from keys
    st.add(x[50:], ents[50:])
    emb, live = {e["key"]: x[i] for i, e in enumerate(ents)}, {e["key"]: e for e in ents}
    q = _unit(rng, 3, 16)

    def check() -> None:
        for kw in FILTERS:
            got = st.search(q, k=7, **kw)
            for qi in range(len(q)):
                assert [st.entry(i)["key"] for i, _ in got[qi]] == _brute(emb, live, q[qi], 7, **kw), kw
                assert all(abs(s - float(emb[st.entry(i)["key"]] @ q[qi])) < 1e-5 for i, s in got[qi])

    check()
    assert st.delete(ids=[key_id("t1"), key_id("t2")], keys=["t3"]) == 3 and st.delete(ids=[key_id("t1")]) == 0
    n_old = sum(parse_time(e["captured"]) < T0 + 3 * DAY for key, e in live.items() if key not in ("t1", "t2", "t3"))
    assert st.delete(before="2026-11-04") == n_old  # retention by capture time
    for key in [key for key, e in live.items() if key in ("t1", "t2", "t3") or parse_time(e["captured"]) < T0 + 3 * DAY]:
        del live[key]
    assert len(st) == len(live) and st.find("t2") is None
    with pytest.raises(IndexFormatError, match="no entry with id"):
        st.entry(key_id("t2"))
    check()
    st.compact()
    assert len(st) == len(live) and [e["id"] for e in st.entries()] == sorted(key_id(key) for key in live)
    assert st.entry(key_id("t50"))["key"] == "t50" and np.array_equal(st.embedding(key_id("t50")), x[50])
    check()
    assert st.add(x[1:2], ents[1:2]) == [key_id("t1")]  # a deleted key is re-added at once, with its id
    live["t1"] = ents[1]
    check()


def test_refused_adds_change_nothing(tmp_path: Path) -> None:
    st = GalleryStore.create(tmp_path / "g", 8)
    st.add(_unit(np.random.default_rng(1), 3, 8), _entries(3))
    version = st.version
    nan = np.ones((1, 8), np.float32)
    nan[0, 3] = np.nan
    for emb, ents, match in ((np.ones((1, 9), np.float32), _entries(1, prefix="a"), r"shape \[N, 8\]"),
                             (np.zeros((1, 8), np.float32), _entries(1, prefix="z"), "all zeros"),
                             (nan, _entries(1, prefix="n"), "NaN"),
                             (np.ones((1, 8), np.float32), _entries(1), "already in the store"),
                             (np.ones((2, 8), np.float32), _entries(1, prefix="d") * 2, "twice"),
                             (np.ones((1, 8), np.float32), [{**_entries(1, prefix="c")[0], "captured": "yesterday"}], "ISO 8601"),
                             (np.ones((1, 8), np.float32), [{**_entries(1, prefix="c")[0], "camera": 1 << 31 << 31}], "'camera'.*out of range"),
                             (np.ones((1, 8), np.float32), [{**_entries(1, prefix="c")[0], "pid": -(1 << 60)}], "'pid'.*out of range")):
        with pytest.raises(IndexFormatError, match=match):
            st.add(emb, ents)
    assert len(st) == 3 and st.version == version
    with pytest.raises(IndexFormatError, match="not an ISO 8601 time"):
        st.search(np.ones(8, np.float32), since="last week")
    with pytest.raises(IndexFormatError, match="out of range"):
        st.search(np.ones(8, np.float32), cameras=[1 << 62])
    assert st.add(np.ones((2, 8), np.float32), _entries(2), skip_existing=True) == []  # both present: nothing to add
    assert st.add(np.ones((2, 8), np.float32), _entries(2, start=2), skip_existing=True) == [key_id("t3")]


def test_until_a_date_alone_keeps_that_whole_day(tmp_path: Path) -> None:
    st = GalleryStore.create(tmp_path / "g", 4)
    ents = [{**_entries(1, start=i)[0], "captured": c} for i, c in
            enumerate(["2026-11-29T23:59:59Z", "2026-11-30T00:00:00Z", "2026-11-30T23:59:59.5Z", "2026-12-01T00:00:00Z"])]
    st.add(np.eye(4, dtype=np.float32), ents)
    got = {st.entry(i)["key"] for i, _ in st.search(np.ones(4, np.float32), k=10, until="2026-11-30")[0]}
    assert got == {"t0", "t1", "t2"}
    got = {st.entry(i)["key"] for i, _ in st.search(np.ones(4, np.float32), k=10, since="2026-11-30", until="2026-11-30")[0]}
    assert got == {"t1", "t2"}


def test_a_pinned_view_never_moves_and_readers_cannot_write(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    st = GalleryStore.create(tmp_path / "g", 8)
    x = _unit(rng, 40, 8)
    st.add(x[:20], _entries(20))
    reader = open_store(tmp_path / "g", readonly=True)
    view = reader.view()
    before = view.search(x[:3], k=5)
    st.add(x[20:], _entries(20, start=20))
    st.delete(keys=[f"t{i}" for i in range(10)])
    st.compact()
    assert view.search(x[:3], k=5) == before and len(view) == 20 and view.entry(key_id("t3"))["key"] == "t3"
    assert np.array_equal(view.embedding(key_id("t3")), x[3])
    assert len(reader) == 20  # an unpinned reader moves on a search or refresh
    assert reader.search(x[25], k=1)[0][0][0] == key_id("t25") and len(reader) == 30 and reader.find("t3") is None
    with pytest.raises(IndexFormatError, match="read-only"):
        reader.add(x[:1], _entries(1, prefix="new"))


def test_approximate_search_finds_the_exact_top10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wide embeddings with structure (people on a low-dimensional appearance space): after optimize trains the
    IVF-PQ index, the approximate top-10 holds >= 0.95 of the exact one, with and without filters, rows added after
    the index included."""
    monkeypatch.setattr(store_mod, "IVF_MIN_ROWS", 2000)
    monkeypatch.setattr(store_mod, "EXACT_BELOW", 200)
    rng = np.random.default_rng(4)
    dim, n = 256, 6000
    basis = rng.normal(size=(16, dim)).astype(np.float32)
    person = (rng.normal(size=(n // 4, 16)) @ basis) / np.sqrt(dim) + 0.5 * _unit(rng, n // 4, dim)
    x = np.repeat(person, 4, axis=0) + 0.6 * _unit(rng, n, dim)
    st = GalleryStore.create(tmp_path / "g", dim, "ivf")
    st.add(x, _entries(n, cameras=10))
    assert st.needs_compaction()
    st.compact()
    assert st._has_ann() and not st.needs_compaction()
    st.add(x[:100] + 0.1, _entries(100, prefix="tail", cameras=10))  # rows past the index: searched too
    assert st._indexed_before() is not None and len(st._tail(st._indexed_before())["id"]) == 100
    tail_hits = st.search(x[:5] + 0.1, k=1)
    assert [st.entry(r[0][0])["key"] for r in tail_hits] == [f"tail{i}" for i in range(5)]
    q = x[rng.choice(n, 40, replace=False)] + 0.6 * _unit(rng, 40, dim)
    for kw in ({}, {"modality": "ir"}, {"modality": "rgb", "cameras": [1, 2, 3]}):
        exact = st.search(q, k=10, exact=True, **kw)
        approx = st.search(q, k=10, **kw)
        recall = np.mean([len({i for i, _ in a} & {i for i, _ in e}) / 10 for a, e in zip(approx, exact)])
        assert recall >= 0.95, (kw, recall)
        assert all(a[0][1] <= e[0][1] + 1e-5 for a, e in zip(approx, exact))  # never better than exact


def _old_entries(n: int) -> list[dict]:
    return [{**e, "thumbnail": f"thumbs/{i}.jpg" if i == 3 else None} for i, e in enumerate(_entries(n))]


def test_old_index_folder_migrates_with_ids_entries_and_thumbnails(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    old = GalleryIndex.create(12, "hnsw", meta={"checkpoint": "c.pt"})
    x = _unit(rng, 30, 12)
    old.add(x, _old_entries(30))
    folder = tmp_path / "old"
    old.save(folder)
    (folder / "thumbs").mkdir()
    (folder / "thumbs" / "3.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(IndexFormatError, match="cmft index --upgrade"):
        open_store(folder, readonly=True)  # a reader never converts
    st = open_store(folder)
    assert st.kind == "ivf" and st.meta == {"checkpoint": "c.pt", "migrated_from": "cmft-gallery-index/1"} and len(st) == 30
    assert st.entries() == old.entries() and all(np.array_equal(st.embedding(i), old.embedding(i)) for i in range(30))
    names = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    assert names == {"gallery.lance", "thumbs"}  # the old files go once the store holds every entry
    assert (folder / "thumbs" / "3.jpg").is_file()
    q = x[:4]
    assert [[i for i, _ in r] for r in st.search(q, k=5, modality="ir")] == [[i for i, _ in r] for r in old.search(q, k=5, modality="ir")]
    assert st.add(x[:1], _entries(1, prefix="new")) == [key_id("new0")]  # new entries get ids from keys, past the old ones


def _write_v2(folder: Path, x: np.ndarray, entries: list[dict], deleted: set[int]) -> None:
    """A ``cmft-gallery-store/2`` folder as the old store wrote it (rows after a compaction: ids != rows)."""
    folder.mkdir(parents=True)
    db = sqlite3.connect(folder / "store.sqlite")
    db.executescript("CREATE TABLE info (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
                     "CREATE TABLE entries (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, row INTEGER NOT NULL, camera INTEGER NOT NULL,"
                     " modality TEXT NOT NULL, pid INTEGER, t REAL, deleted INTEGER NOT NULL DEFAULT 0, doc TEXT NOT NULL);")
    db.executemany("INSERT INTO info VALUES (?, ?)", {"format": "cmft-gallery-store/2", "dim": str(x.shape[1]), "kind": "flat",
                                                       "meta": json.dumps({"checkpoint": "c.pt"}), "gen": "3", "rows": str(len(x)),
                                                       "sorted_rows": "0", "nlist": "0", "deleted_version": "1",
                                                       "next_id": str(len(x) + 5)}.items())
    rows = np.random.default_rng(0).permutation(len(x))
    db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                   [(i + 5, e["key"], int(rows[i]), e["camera"], e["modality"], e["pid"], int(i in deleted), json.dumps(e))
                    for i, e in enumerate(entries)])
    db.commit()
    db.close()
    stored = np.zeros_like(x)
    stored[rows] = x
    stored.astype(np.float32).tofile(folder / "vectors.3.f32")
    (folder / "rows.3.bin").write_bytes(b"\0" * 25 * len(x))


def test_store_v2_folder_migrates_losslessly(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    x = _unit(rng, 25, 8)
    ents = _entries(25)
    _write_v2(tmp_path / "v2", x, ents, deleted={4, 7})
    st = open_store(tmp_path / "v2")
    assert len(st) == 23 and st.meta["checkpoint"] == "c.pt" and st.meta["migrated_from"] == "cmft-gallery-store/2"
    for i, e in enumerate(ents):
        if i in (4, 7):
            assert st.find(e["key"]) is None
        else:
            assert st.entry(i + 5) == {**e, "id": i + 5} and np.array_equal(st.embedding(i + 5), x[i])
    assert {p.name for p in (tmp_path / "v2").iterdir() if not p.name.startswith(".")} == {"gallery.lance"}


def test_damage_gets_a_clear_error_naming_the_store(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match="no such index folder"):
        open_store(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexFormatError, match="not a gallery store"):
        open_store(tmp_path / "empty")
    st = GalleryStore.create(tmp_path / "g", 8)
    x = _unit(np.random.default_rng(6), 4, 8)
    st.add(x, _entries(4))
    # a row whose stored vector no longer matches its checksum (bit rot, or a write outside the store)
    st._tbl.update(where=f"id = {key_id('t2')}", values={"crc": 7})
    with pytest.raises(GalleryDamagedError, match=r"gallery.lance: entry \d+ is damaged"):
        st.embedding(key_id("t2"))
    with pytest.raises(GalleryDamagedError, match="damaged"):
        st.search(x[2], k=4)
    # damaged data files: every read names the store
    for f in (tmp_path / "g" / "gallery.lance" / "data").iterdir():
        f.write_bytes(b"\0" * 64)
    with pytest.raises(GalleryDamagedError, match="gallery.lance: cannot read the gallery store"):
        GalleryStore(tmp_path / "g", readonly=True).search(x[0], k=2)
    for f in (tmp_path / "g" / "gallery.lance" / "_versions").iterdir():
        f.write_bytes(b"garbage" * 20)
    with pytest.raises(GalleryDamagedError, match="gallery.lance: cannot read the gallery store"):
        open_store(tmp_path / "g")
    assert parse_time("2026-11-30") == parse_time("2026-11-30T00:00:00Z")
    assert parse_time("2026-11-30", end_of_day=True) == parse_time("2026-11-30T23:59:59.999999Z")
