"""The store's concurrency contract, with real processes: writers adding overlapping keys, a deleter, an optimizer
and readers at once on one store end with exactly the content a store built one step at a time holds (same keys,
same rankings, same scores), no reader ever gets another entry's vector and a pinned view never moves; two
`cmft index` runs into the same new store at once both succeed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("lancedb", reason="the gallery store needs the 'serve' extra")

from cmft.cli import app  # noqa: E402
from cmft.search.store import GalleryStore, open_store  # noqa: E402

DIM = 16
COMMON = f"""
import json, sys, time
import numpy as np
from cmft.search.store import GalleryStore

def vec(i):
    x = np.random.default_rng(i).normal(size={DIM}).astype(np.float32)
    return x / np.linalg.norm(x)

def entry(i):
    return {{"key": f"k{{i}}", "camera": i % 5 + 1, "modality": "rgb" if i % 2 else "ir", "pid": i // 3, "time": None,
             "source": "s", "frames": ["f.jpg"], "thumbnail": None}}
"""
WRITER = COMMON + """
path, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
st = GalleryStore.create(path, %d, exist_ok=True)
for start in range(lo, hi, 5):
    keys = list(range(start, min(hi, start + 5)))
    st.add(np.stack([vec(i) for i in keys]), [entry(i) for i in keys], skip_existing=True)
print("ok")
""" % DIM
DELETER = COMMON + """
st = GalleryStore(sys.argv[1])
for i in range(1000, 1025):
    st.delete(keys=[f"k{i}"])
    if i % 8 == 0:
        st.compact()
print("ok")
"""
READER = COMMON + """
st = GalleryStore(sys.argv[1], readonly=True)
view = st.view()
q = np.stack([vec(10_000 + j) for j in range(4)])
pinned = view.search(q, k=8)
wrong = searches = 0
deadline = time.time() + float(sys.argv[2])
while time.time() < deadline:
    for row in q:
        v = st.view()  # one version for the search and the lookups, as a service request does
        for i, score in v.search(row, k=8)[0]:
            key = int(v.entry(i)["key"][1:])
            if abs(float(vec(key) @ row) - score) > 1e-5 or not np.array_equal(v.embedding(i), vec(key)):
                wrong += 1
        searches += 1
print(json.dumps({"wrong": wrong, "searches": searches, "pinned_unchanged": view.search(q, k=8) == pinned}))
"""


def _run(code: str, *args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _vec(i: int) -> np.ndarray:
    x = np.random.default_rng(i).normal(size=DIM).astype(np.float32)
    return x / np.linalg.norm(x)


def _entry(i: int) -> dict:
    return {"key": f"k{i}", "camera": i % 5 + 1, "modality": "rgb" if i % 2 else "ir", "pid": i // 3, "time": None,
            "source": "s", "frames": ["f.jpg"], "thumbnail": None}


def _same_content(a: GalleryStore, b: GalleryStore) -> None:
    """Same keys, ids and entries; the same rankings (keys, order) and scores under filters."""
    ea, eb = a.entries(), b.entries()
    assert [e["key"] for e in ea] == [e["key"] for e in eb] and ea == eb
    assert len({e["key"] for e in ea}) == len(ea)  # no key twice
    q = np.stack([_vec(20_000 + j) for j in range(6)])
    for kw in ({}, {"modality": "ir"}, {"cameras": [2, 3]}):
        ra, rb = a.search(q, k=12, **kw), b.search(q, k=12, **kw)
        assert [[i for i, _ in r] for r in ra] == [[i for i, _ in r] for r in rb], kw
        assert np.array_equal([[s for _, s in r] for r in ra], [[s for _, s in r] for r in rb]), kw


def test_writers_deleter_optimizer_and_readers_at_once(tmp_path: Path) -> None:
    path = tmp_path / "g"
    seed = GalleryStore.create(path, DIM)
    seed.add(np.stack([_vec(i) for i in range(1000, 1050)]), [_entry(i) for i in range(1000, 1050)])
    procs = [_run(READER, path, 12), _run(READER, path, 12)]
    procs += [_run(WRITER, path, lo, hi) for lo, hi in ((0, 60), (30, 90), (60, 120), (0, 120))]  # overlapping keys
    procs.append(_run(DELETER, path))
    outs = []
    for p in procs:
        out, errors = p.communicate(timeout=600)
        assert p.returncode == 0, errors[-3000:]
        outs.append(out.strip().splitlines()[-1])
    for line in outs[:2]:
        r = json.loads(line)
        assert r["searches"] > 0 and r["wrong"] == 0 and r["pinned_unchanged"], r
    got = open_store(path, readonly=True)
    final = list(range(120)) + list(range(1025, 1050))
    assert len(got) == len(final)
    ref = GalleryStore.create(tmp_path / "ref", DIM)  # the same content, one step at a time
    for i in final:
        ref.add(_vec(i)[None], [_entry(i)])
    _same_content(got, ref)


def test_two_cmft_index_runs_into_one_new_store_both_succeed(tiny_checkpoint: Path, vcm4: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "cmft", "index", str(vcm4), "--store", str(store), "--checkpoint", str(tiny_checkpoint),
           "--device", "cpu", "--commit-every", "2"]
    runs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in runs:
        out, errors = p.communicate(timeout=600)
        assert p.returncode == 0, (out[-2000:], errors[-2000:])
    r = CliRunner().invoke(app, ["index", str(vcm4), "--store", str(tmp_path / "ref"), "--checkpoint", str(tiny_checkpoint),
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    got, ref = open_store(store, readonly=True), open_store(tmp_path / "ref", readonly=True)
    assert len(got) == len(ref) == 9
    a, b = got.entries(), ref.entries()
    assert [e["key"] for e in a] == [e["key"] for e in b]
    for e in a:  # thumbnails are named per add; everything else is the same
        assert (store / e["thumbnail"]).is_file()
    strip = [[{k: v for k, v in e.items() if k != "thumbnail"} for e in x] for x in (a, b)]
    assert strip[0] == strip[1]
    q = np.stack([ref.embedding(e["id"]) for e in b[:4]])
    ra, rb = got.search(q, k=5, modality="rgb"), ref.search(q, k=5, modality="rgb")
    assert [[i for i, _ in r] for r in ra] == [[i for i, _ in r] for r in rb]
    assert np.allclose([[s for _, s in r] for r in ra], [[s for _, s in r] for r in rb], atol=1e-6)
