"""Gallery search: the index (real FAISS, flat and HNSW) and its files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cmft.search import GalleryIndex, IndexFormatError

def _entries(n: int, cameras: int = 3, prefix: str = "t") -> list[dict]:
    return [{"key": f"{prefix}{i}", "camera": i % cameras + 1, "modality": "rgb" if i % 2 else "ir", "pid": i // 4,
             "time": None, "source": f"/x/{prefix}{i}", "frames": [f"/x/{prefix}{i}/1.jpg"], "thumbnail": None}
            for i in range(n)]


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute(emb: np.ndarray, entries: list[dict], q: np.ndarray, k: int, modality=None, cameras=None, exclude=()) -> list[int]:
    keep = [i for i, e in enumerate(entries) if (modality is None or e["modality"] == modality)
            and (cameras is None or e["camera"] in cameras) and i not in set(exclude)]
    s = emb[keep] @ q
    order = np.lexsort((np.array(keep), -s))[:k]
    return [keep[j] for j in order]


# --- the index on its own -------------------------------------------------------------------------------------


def test_import_loads_neither_faiss_nor_torch() -> None:
    code = "import sys, cmft.search, cmft.search.index; assert 'faiss' not in sys.modules and 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_filters_exclude_and_k_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    emb = _unit(rng, 60, 16)
    idx = GalleryIndex.create(16, meta={"note": "x"})
    assert idx.add(emb[:25] * 3.0, _entries(60)[:25]) == list(range(25))  # re-normalised
    assert idx.add(emb[25:], _entries(60)[25:]) == list(range(25, 60))  # incremental ids
    assert len(idx) == 60 and idx.entry(7)["id"] == 7 and idx.entry(7)["key"] == "t7"
    assert np.allclose(idx.embedding(3), emb[3], atol=1e-6) and np.array_equal(idx.embedding(30), emb[30])
    ents = _entries(60)
    q = _unit(rng, 4, 16)
    for kw in ({}, {"modality": "rgb"}, {"modality": "ir", "cameras": [2]}, {"cameras": [1, 3], "exclude": [0, 5, 9]},
               {"exclude": list(range(0, 60, 2))}):
        got = idx.search(q, k=7, **kw)
        for qi in range(len(q)):
            ids = [i for i, _ in got[qi]]
            assert ids == _brute(emb, ents, q[qi], 7, **kw), kw
            assert all(abs(s - float(emb[i] @ q[qi])) < 1e-5 for i, s in got[qi])
            assert [s for _, s in got[qi]] == sorted((s for _, s in got[qi]), reverse=True)
    # filters come before the top-k: 10 candidates, k=50 gives all 10, best first
    few = idx.search(q[:1], k=50, modality="rgb", cameras=[2])[0]
    assert [i for i, _ in few] == _brute(emb, ents, q[0], 50, modality="rgb", cameras=[2]) and len(few) == 10
    assert idx.search(q[:1], k=5, modality="rgb", cameras=[99]) == [[]]
    assert idx.search(q[0], k=3)[0] == idx.search(q[:1], k=3)[0]  # one vector is one query


def test_ties_go_to_the_lower_id_even_at_the_cut() -> None:
    for kind in ("flat", "hnsw"):
        idx = GalleryIndex.create(8, kind)
        v = np.zeros((100, 8), np.float32)
        v[:, 0] = 1
        idx.add(v[::-1].copy(), _entries(100))
        assert [i for i, _ in idx.search(v[:1], k=5)[0]] == [0, 1, 2, 3, 4], kind
        assert [i for i, _ in idx.search(v[:1], k=4, exclude=[0, 2])[0]] == [1, 3, 4, 5], kind


def test_empty_index_and_bad_arguments(tmp_path: Path) -> None:
    idx = GalleryIndex.create(8)
    assert len(idx) == 0 and idx.entries() == [] and idx.search(np.ones((2, 8), np.float32), k=5) == [[], []]
    idx.save(tmp_path / "empty")
    back = GalleryIndex.load(tmp_path / "empty")
    assert len(back) == 0 and back.dim == 8 and back.search(np.ones(8, np.float32)) == [[]]
    idx.add(_unit(np.random.default_rng(1), 3, 8), _entries(3))
    q = np.ones((1, 8), np.float32)
    with pytest.raises(IndexFormatError, match=r"shape \[N, 8\]"):
        idx.search(np.ones((1, 9), np.float32))
    with pytest.raises(IndexFormatError, match=r"shape \[N, 8\]"):
        idx.add(np.ones((1, 9), np.float32), _entries(1, prefix="new"))
    with pytest.raises(IndexFormatError, match="modality filter"):
        idx.search(q, modality="thermal")
    with pytest.raises(IndexFormatError, match="cameras filter"):
        idx.search(q, cameras="12")
    with pytest.raises(IndexFormatError, match="not in the index"):
        idx.search(q, exclude=[3])
    with pytest.raises(IndexFormatError, match="k must be"):
        idx.search(q, k=0)
    with pytest.raises(IndexFormatError, match="all zeros"):
        idx.add(np.zeros((1, 8), np.float32), _entries(1, prefix="z"))
    with pytest.raises(IndexFormatError, match="already in the index"):
        idx.add(np.ones((1, 8), np.float32), _entries(1))
    with pytest.raises(IndexFormatError, match="already in the index"):
        idx.add(np.ones((2, 8), np.float32), _entries(1, prefix="d") * 2)
    with pytest.raises(IndexFormatError, match="'modality' must be"):
        idx.add(np.ones((1, 8), np.float32), [{**_entries(1, prefix="m")[0], "modality": "thermal"}])
    with pytest.raises(IndexFormatError, match="no entry with id 3"):
        idx.entry(3)
    with pytest.raises(IndexFormatError, match="unknown index kind"):
        GalleryIndex.create(8, "ivf")
    assert len(idx) == 3  # every refused add left the index as it was


def test_hnsw_gives_the_flat_top1() -> None:
    rng = np.random.default_rng(2)
    emb = _unit(rng, 3000, 32)
    ents = _entries(3000)
    flat, hnsw = GalleryIndex.create(32, "flat"), GalleryIndex.create(32, "hnsw")
    flat.add(emb, ents)
    hnsw.add(emb[:1000], ents[:1000])
    hnsw.add(emb[1000:], ents[1000:])  # incremental, after a first build
    hnsw.search(emb[:1], k=1)
    q = emb[rng.choice(3000, 50, replace=False)] + 0.05 * _unit(rng, 50, 32)
    for kw in ({}, {"exclude": [1, 2, 3]}, {"modality": "rgb", "cameras": [2]}):  # graph walk, graph + selector, exact subset
        a, b = flat.search(q, k=1, **kw), hnsw.search(q, k=1, **kw)
        assert [r[0][0] for r in a] == [r[0][0] for r in b], kw


def test_save_load_round_trip_is_bit_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    for kind in ("flat", "hnsw"):
        idx = GalleryIndex.create(24, kind, meta={"checkpoint": "c.pt", "seq_len": 6})
        ents = _entries(40)
        ents[0]["extra"] = {"video": "cam1.mp4", "frames": [1, 2]}
        idx.add(rng.normal(size=(40, 24)).astype(np.float32), ents)
        idx.save(tmp_path / kind)
        assert sorted(p.name for p in (tmp_path / kind).iterdir()) == ["embeddings.npy", "entries.json", "index.json"]
        raw = np.load(tmp_path / kind / "embeddings.npy", allow_pickle=False)
        back = GalleryIndex.load(tmp_path / kind)
        assert back.kind == kind and back.meta == {"checkpoint": "c.pt", "seq_len": 6} and len(back) == 40
        stored = np.stack([idx.embedding(i) for i in range(40)])
        assert raw.dtype == np.float32 and raw.tobytes() == stored.tobytes()
        assert np.stack([back.embedding(i) for i in range(40)]).tobytes() == stored.tobytes()
        assert back.entries() == idx.entries() and back.entry(0)["extra"] == {"video": "cam1.mp4", "frames": [1, 2]}
        q = rng.normal(size=(5, 24)).astype(np.float32)
        assert back.search(q, k=6, modality="ir") == idx.search(q, k=6, modality="ir")
        # the loaded index extends like the original
        back.add(np.ones((1, 24), np.float32), _entries(1, prefix="more"))
        back.save(tmp_path / kind)
        assert len(GalleryIndex.load(tmp_path / kind)) == 41


def test_broken_index_folders_are_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match="no such index folder"):
        GalleryIndex.load(tmp_path / "nope")
    idx = GalleryIndex.create(4)
    idx.add(np.eye(4, dtype=np.float32)[:3], _entries(3))

    def fresh(name: str) -> Path:
        idx.save(tmp_path / name)
        return tmp_path / name

    f = fresh("json")
    (f / "entries.json").write_text('[{"key": "t0", ')
    with pytest.raises(IndexFormatError, match=r"entries\.json: not valid JSON"):
        GalleryIndex.load(f)
    f = fresh("object")
    obj = np.empty((3, 4), dtype=object)
    obj[:] = 1.0
    np.save(f / "embeddings.npy", obj, allow_pickle=True)  # a pickled object array: must never be unpickled
    with pytest.raises(IndexFormatError, match=r"embeddings\.npy: not a plain \.npy float array"):
        GalleryIndex.load(f)
    f = fresh("f64")
    np.save(f / "embeddings.npy", np.eye(4)[:3])
    with pytest.raises(IndexFormatError, match=r"embeddings\.npy: expected a 2-D float32"):
        GalleryIndex.load(f)
    f = fresh("dim")
    np.save(f / "embeddings.npy", np.ones((3, 5), np.float32))
    with pytest.raises(IndexFormatError, match=r"embeddings\.npy: shape \[3, 5\] does not match"):
        GalleryIndex.load(f)
    f = fresh("count")
    (f / "entries.json").write_text(json.dumps(json.loads((f / "entries.json").read_text())[:2]))
    with pytest.raises(IndexFormatError, match=r"entries\.json: 2 entries, but index\.json says 3"):
        GalleryIndex.load(f)
    f = fresh("dup")
    ents = json.loads((f / "entries.json").read_text())
    ents[2]["key"] = "t0"
    (f / "entries.json").write_text(json.dumps(ents))
    with pytest.raises(IndexFormatError, match=r"entries\.json: entries 0 and 2 share the key"):
        GalleryIndex.load(f)
    f = fresh("field")
    ents = json.loads((f / "entries.json").read_text())
    ents[1]["camera"] = "two"
    (f / "entries.json").write_text(json.dumps(ents))
    with pytest.raises(IndexFormatError, match=r"entries\.json: entry 1 \(key 't1'\): 'camera' must be an integer"):
        GalleryIndex.load(f)
    f = fresh("head")
    (f / "index.json").unlink()
    with pytest.raises(IndexFormatError, match=r"index\.json: missing"):
        GalleryIndex.load(f)
