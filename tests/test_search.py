"""Gallery search: the index (real FAISS, flat and HNSW), its files, indexing with a checkpoint, `cmft index` and
`cmft search`, and the acceptance check that search ranks exactly as `cmft eval` does."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cmft.cli import app
from cmft.search import GalleryIndex, IndexFormatError
from cmft.search.store import open_store

runner = CliRunner()


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


# --- indexing with a checkpoint and the command line ----------------------------------------------------------


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic HITSZ-VCM tree: 4 test ids, 22 infrared and 22 visible test tracklets."""
    from cmft.data.datasets.synthetic import SynthConfig, generate_synthetic

    root = tmp_path_factory.mktemp("search") / "synth"
    generate_synthetic(root, SynthConfig(ids=6, train_ids=2, height=32, width=16, max_frames=14, workers=1))
    return root


@pytest.fixture(scope="module")
def built(synth: Path, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`cmft index` of the synthetic test split with the tiny checkpoint (read-only for the tests: copy to change)."""
    out = tmp_path_factory.mktemp("search") / "index"
    r = runner.invoke(app, ["index", str(synth), "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "44 entries" in r.output and "44 new" in r.output
    return out


@pytest.fixture(scope="module")
def eval_sets(synth: Path, tiny_checkpoint: Path) -> tuple:
    """What `cmft eval` computes for the same data: the test sets embedded by its loader and model."""
    from cmft.data import load_hitsz_vcm
    from cmft.engine.checkpoint import load_checkpoint, model_from_checkpoint
    from cmft.evaluation.retrieval import ClipSpec, embed_test_sets

    ds = load_hitsz_vcm(synth, splits=("test",))
    ckpt = load_checkpoint(tiny_checkpoint)
    cfg = ckpt["config"]
    spec = ClipSpec(cfg["eval"]["seq_len"], cfg["data"]["height"], cfg["data"]["width"], 32, 0)
    return ds, embed_test_sets(model_from_checkpoint(ckpt).embed, ds, spec)


def _search(index: Path, *args: str) -> list[dict]:
    r = runner.invoke(app, ["search", str(index), *args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_search_ranks_exactly_as_eval(built: Path, eval_sets: tuple) -> None:
    """For every query of both directions, `cmft search --json` returns eval's ranked gallery, in order.

    `cmft eval` ranks with the HITSZ-VCM rule (gallery items of the query's identity and camera removed); search
    removes nothing unless asked, so each query is checked twice: with --exclude-same-camera-pid against eval's
    own top-k (`top_k(..., protocol="hitsz_vcm")`, what the report's ranked lists use) and without it against the
    same ranking with nothing removed, over the whole gallery."""
    from cmft.evaluation.report import top_k

    ds, sets = eval_sets
    removal_mattered = 0
    for d in ("ir2rgb", "rgb2ir"):
        qt, gt = ds.split(d)
        q, g = (sets["ir"], sets["rgb"]) if d == "ir2rgb" else (sets["rgb"], sets["ir"])
        ref_rule = top_k(q.feats, g.feats, q.pids, g.pids, q.camids, g.camids, range(len(qt)), k=10, protocol="hitsz_vcm")
        ref_all = top_k(q.feats, g.feats, q.pids, g.pids, q.camids, g.camids, range(len(qt)), k=len(gt), protocol="regdb")
        cos = torch.nn.functional.normalize(q.feats, dim=1) @ torch.nn.functional.normalize(g.feats, dim=1).T
        for i, t in enumerate(qt):
            got = _search(built, "--query", t.paths[0], "--top-k", "10", "--exclude-same-camera-pid")
            assert [r["key"] for r in got] == [gt[j].paths[0] for j in ref_rule[i]], (d, i)
            assert all(r["modality"] != t.modality for r in got)
            assert np.allclose([r["score"] for r in got], cos[i, ref_rule[i]].numpy(), atol=1e-5)
            everything = _search(built, "--query", t.paths[0], "--top-k", "100")
            assert [r["key"] for r in everything] == [gt[j].paths[0] for j in ref_all[i]], (d, i)
            removal_mattered += [r["key"] for r in everything[:10]] != [r["key"] for r in got]
    assert removal_mattered > 0  # the rule changed some lists: the two checks are different checks


def test_query_dir_embeds_like_the_index(built: Path, synth: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    entries = open_store(built).entries()
    ir = next(e for e in entries if e["modality"] == "ir" and e["camera"] == 2)
    folder = tmp_path / "query"
    folder.mkdir()
    for n, f in enumerate(ir["frames"], 1):
        shutil.copy(f, folder / f"{n}.jpg")
    by_key = _search(built, "--query", str(ir["id"]), "--top-k", "8")
    by_dir = _search(built, "--query-dir", str(folder), "--query-modality", "ir", "--checkpoint", str(tiny_checkpoint),
                     "--device", "cpu", "--top-k", "8")
    assert [r["id"] for r in by_dir] == [r["id"] for r in by_key]
    assert np.allclose([r["score"] for r in by_dir], [r["score"] for r in by_key], atol=1e-5)
    # filters on the command line: cameras (repeated), modality any, same-modality search leaves the query out
    cams = _search(built, "--query", str(ir["id"]), "--camera", "1", "--camera", "3", "--top-k", "50")
    assert cams and {r["camera"] for r in cams} <= {1, 3} and {r["modality"] for r in cams} == {"rgb"}
    n_rgb13 = sum(e["modality"] == "rgb" and e["camera"] in (1, 3) for e in entries)
    assert len(cams) == n_rgb13
    anym = _search(built, "--query", str(ir["id"]), "--modality", "any", "--top-k", "100")
    assert len(anym) == len(entries) - 1 and ir["id"] not in [r["id"] for r in anym]
    # a unique end of a key works as a query
    tail = "/".join(Path(ir["key"]).parts[-4:])
    assert _search(built, "--query", tail, "--top-k", "3") == _search(built, "--query", ir["key"], "--top-k", "3")
    # the table: one row per result with the key
    r = runner.invoke(app, ["search", str(built), "--query", str(ir["id"]), "--top-k", "3"])
    assert r.exit_code == 0 and "score" in r.output and r.output.count("rgb") >= 3


def _in_order(store, synth: Path) -> list[dict]:
    """The store's entries in the order `cmft index` added them (the dataset's order): ids come from keys."""
    from cmft.search.indexing import dataset_items

    return [store.entry(store.find(it["key"])) for it in dataset_items(synth)[1]]


def test_index_contents_thumbnails_and_incremental_add(built: Path, synth: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    idx = open_store(built)
    assert idx.meta["checkpoint"] == str(tiny_checkpoint.resolve()) and idx.meta["seq_len"] == 3 and idx.kind == "flat"
    ents = _in_order(idx, synth)
    assert all(1 << 52 <= e["id"] < 1 << 53 for e in ents)  # ids from keys, exact in JSON and JavaScript
    e = ents[0]
    assert e["key"] == e["source"] == e["frames"][0] and Path(e["key"]).is_file() and e["pid"] is not None
    with Image.open(built / e["thumbnail"]) as im:
        assert im.format == "JPEG" and im.height == 128
    assert len(list((built / "thumbs").glob("*.jpg"))) == len(idx) == 44
    out = tmp_path / "index"
    shutil.copytree(built, out)
    before = open_store(out).version
    ck = ["--checkpoint", str(tiny_checkpoint), "--out", str(out), "--device", "cpu"]
    r = runner.invoke(app, ["index", str(synth), *ck])  # the same dataset again: nothing new, no commit
    assert r.exit_code == 0 and "44 entries" in r.output and "0 new" in r.output
    assert open_store(out).version == before
    # plain tracklet folders: a second run appends only the folders not yet indexed
    folders = []
    for name, src in (("a", ents[0]), ("b", ents[30]), ("c", ents[40])):
        folders.append(tmp_path / "plain" / name)
        folders[-1].mkdir(parents=True)
        for n, f in enumerate(src["frames"], 1):
            shutil.copy(f, folders[-1] / f"{n}.jpg")
    r = runner.invoke(app, ["index", str(folders[0]), str(folders[1]), "--modality", "ir", "--camera", "7", *ck])
    assert r.exit_code == 0 and "46 entries" in r.output and "2 new" in r.output, r.output
    r = runner.invoke(app, ["index", str(folders[1]), str(folders[2]), "--modality", "ir", "--camera", "7", *ck])
    assert r.exit_code == 0 and "47 entries" in r.output and "1 new" in r.output, r.output
    grown = open_store(out)
    new = [grown.find(str(f.resolve())) for f in folders]
    assert None not in new and {grown.entry(i)["camera"] for i in new} == {7} and grown.entry(new[2])["pid"] is None
    assert all(np.array_equal(grown.embedding(e["id"]), idx.embedding(e["id"])) for e in ents)
    assert np.allclose(grown.embedding(new[0]), idx.embedding(ents[0]["id"]), atol=1e-5)  # the same frames embed the same
    hits = _search(out, "--query", str(new[0]), "--modality", ents[0]["modality"], "--camera", str(ents[0]["camera"]), "--top-k", "1")
    assert hits[0]["id"] == ents[0]["id"] and hits[0]["score"] > 0.9999


def test_command_line_errors(built: Path, synth: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    def fails(*args: str) -> str:
        r = runner.invoke(app, list(args))
        assert r.exit_code == 2, r.output
        return " ".join(r.output.split())

    ck = ["--checkpoint", str(tiny_checkpoint), "--device", "cpu"]
    assert "no such index folder" in fails("search", str(tmp_path / "missing"), "--query", "0")
    assert "no entry has this key or id" in fails("search", str(built), "--query", "nobody/1.jpg")
    assert "no entry with that id" in fails("search", str(built), "--query", "999")
    assert "exactly one of --query" in fails("search", str(built))
    assert "--query-modality" in fails("search", str(built), "--query-dir", str(synth))
    broken = tmp_path / "broken"
    shutil.copytree(built, broken)
    for manifest in (broken / "gallery.lance" / "_versions").iterdir():
        manifest.write_bytes(b"not a manifest" * 100)
    assert "gallery.lance: cannot read the gallery store" in fails("search", str(broken), "--query", "0")
    # another model: refused when extending the index and when embedding a query folder
    other = tmp_path / "other.pt"
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][name] = ckpt["model"][name] + 0.01
    torch.save(ckpt, other)
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    msg = fails("index", str(synth), "--checkpoint", str(other), "--out", str(copy), "--device", "cpu")
    assert "gallery.lance: built with another model" in msg
    assert len(open_store(copy)) == 44
    one = _in_order(open_store(built), synth)[0]["source"]
    assert "built with another model" in fails("search", str(built), "--query-dir", str(Path(one).parent), "--query-modality",
                                               "ir", "--checkpoint", str(other), "--device", "cpu")
    # an index of another width; an approximate run on an exact index; folders that are no dataset
    GalleryIndex.create(7).save(tmp_path / "dim7")  # an old-format folder: converted, then refused
    assert "7-wide embeddings" in fails("index", str(synth), *ck, "--out", str(tmp_path / "dim7"))
    assert "leave out --approximate" in fails("index", str(synth), *ck, "--out", str(copy), "--approximate")
    assert "--modality and --camera" in fails("index", str(tmp_path / "broken"), *ck, "--out", str(tmp_path / "x"))
    assert "both --modality and --camera" in fails("index", str(synth), *ck, "--out", str(tmp_path / "x"), "--modality", "ir")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert "not a gallery store" in fails("index", str(synth), *ck, "--out", str(tmp_path / "busy"))


def test_track_export_entries_carry_the_video_time(tiny_checkpoint: Path, tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2", reason="writing a `cmft track` export needs the 'track' extra (OpenCV)")
    from cmft.inference import Extractor
    from cmft.search.indexing import index_dataset
    from cmft.tracking.export import PlannedTracklet, SourceExport, export_dataset
    from cmft.tracking.video import open_video

    def source(name: str, camera: int, modality: str, first: int) -> SourceExport:
        video = tmp_path / f"{name}.avi"
        out = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (80, 60))
        for i in range(first + 14):
            out.write(np.full((60, 80, 3), 30 + 5 * i % 200, np.uint8))
        out.release()
        box = np.tile(np.array([[10, 5, 30, 55]], np.float64), (14, 1))
        return SourceExport(open_video(video), camera, modality, [PlannedTracklet(1, list(range(first, first + 14)), box)],
                            {"fps": 10.0})

    root = tmp_path / "site"
    export_dataset(root, [source("day", 1, "rgb", 20), source("night", 2, "ir", 5)])
    idx = index_dataset(Extractor(tiny_checkpoint, device="cpu"), root, tmp_path / "index")
    by_mod = {e["modality"]: e for e in idx.entries()}
    assert by_mod["rgb"]["time"] == f"{tmp_path / 'day.avi'}#20" and by_mod["rgb"]["seconds"] == 2.0
    assert by_mod["ir"]["time"] == f"{tmp_path / 'night.avi'}#5" and by_mod["ir"]["video_frames"][:2] == [5, 6]
    assert by_mod["ir"]["label"] == "track" and open_store(tmp_path / "index").entries() == idx.entries()


def test_image_datasets_index_every_test_image_once(tmp_path: Path) -> None:
    from test_sysu_regdb import _sysu_counts, write_regdb_tree, write_sysu_tree

    from cmft.data.datasets.regdb import load_regdb
    from cmft.data.datasets.sysu_mm01 import IMAGE_SUFFIXES, read_sysu_ids, sysu_query
    from cmft.search.indexing import dataset_items

    root = write_sysu_tree(tmp_path / "sysu", _sysu_counts())
    name, items = dataset_items(root)
    test_ids = set(read_sysu_ids(root, "test"))
    on_disk = {str(p) for c in range(1, 7) for pid in test_ids for p in (root / f"cam{c}" / f"{pid:04d}").glob("*")
               if p.suffix.lower() in IMAGE_SUFFIXES}
    assert name == "sysu_mm01" and {i["key"] for i in items} == on_disk and len(items) == len(on_disk)  # not one draw
    assert [i["key"] for i in items if i["modality"] == "ir"] == [str(root / rel) for rel, _, _ in sysu_query(root)]
    assert all((i["modality"] == "ir") == (i["camera"] in (3, 6)) and i["pid"] in test_ids for i in items)
    name, items = dataset_items(write_regdb_tree(tmp_path / "regdb"))
    ds = load_regdb(tmp_path / "regdb", trial=1)
    assert name == "regdb" and [i["key"] for i in items] == [t.paths[0] for t in ds.test_ir + ds.test_rgb]
    assert {(i["modality"], i["camera"]) for i in items} == {("ir", 2), ("rgb", 1)}
