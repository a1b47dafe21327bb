"""The gallery on Milvus through Milvus Lite (the same pymilvus client code as a Milvus server): `cmft index`,
`cmft search`, `cmft prune` and the service give what the folder store gives on the same tracklets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("pymilvus", reason="the Milvus backend needs the 'milvus' extra")
pytest.importorskip("milvus_lite", reason="the Milvus backend needs the 'milvus' extra")

from cmft.cli import app  # noqa: E402
from cmft.search.gallery import IndexFormatError, open_gallery  # noqa: E402
from cmft.search.milvus import MilvusGallery, key_id  # noqa: E402
from cmft.search.store import GalleryStore  # noqa: E402

runner = CliRunner()


def _entries(n: int) -> list[dict]:
    return [{"key": f"k{i}", "camera": i % 3 + 1, "modality": "rgb" if i % 2 else "ir", "pid": i // 4, "time": None,
             "captured": f"2026-11-{1 + i % 28:02d}T08:00:00Z", "source": "s", "frames": ["f.jpg"], "thumbnail": None}
            for i in range(n)]


def test_api_matches_the_folder_store(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 16)).astype(np.float32)
    store = GalleryStore.create(tmp_path / "folder", 16)
    mil = MilvusGallery.create(str(tmp_path / "g.db"), 16, meta={"note": "x"})
    store_ids = store.add(x, _entries(60))
    ids = mil.add(x, _entries(60))
    assert ids == [key_id(f"k{i}") for i in range(60)] and len(mil) == 60 and mil.meta == {"note": "x"}
    by_id = {key_id(f"k{i}"): store_ids[i] for i in range(60)}
    q = rng.normal(size=(3, 16)).astype(np.float32)
    for kw in ({}, {"modality": "rgb", "cameras": [1, 2]}, {"since": "2026-11-05", "until": "2026-11-20"}):
        a, b = store.search(q, k=6, **kw), mil.search(q, k=6, **kw)
        assert [[i for i, _ in r] for r in a] == [[by_id[i] for i, _ in r] for r in b], kw
        assert np.allclose([[s for _, s in r] for r in a], [[s for _, s in r] for r in b], atol=1e-5)
    assert mil.entry(key_id("k7"))["key"] == "k7" and mil.find("k7") == key_id("k7") and mil.find("nope") is None
    for prefix in ("k1", "k", "k_", "k%", "x'", "k5"):  # what `cmft ingest` asks to find a video's tracklets
        assert mil.count_prefix(prefix) == store.count_prefix(prefix) == sum(f"k{i}".startswith(prefix) for i in range(60))
    with pytest.raises(IndexFormatError, match="already in the gallery"):
        mil.add(x[:1], _entries(1))
    assert mil.delete(keys=["k1"], before="2026-11-03") == 1 + sum(1 for i in range(60) if i % 28 < 2 and i != 1)
    reader = open_gallery(str(tmp_path / "g.db"), readonly=True)
    assert len(reader) == 60 - 1 - sum(1 for i in range(60) if i % 28 < 2 and i != 1)
    with pytest.raises(IndexFormatError, match="read-only"):
        reader.add(x[:1], [{**_entries(1)[0], "key": "new"}])


def test_cli_index_search_and_serve_on_milvus_lite(synth_store: tuple[Path, Path], tiny_checkpoint: Path, tmp_path: Path) -> None:
    synth, folder = synth_store
    db = tmp_path / "gallery.db"
    ck = ["--checkpoint", str(tiny_checkpoint), "--device", "cpu"]
    r = runner.invoke(app, ["index", str(synth), "--store", str(db), *ck])
    assert r.exit_code == 0 and "44 entries (44 new" in " ".join(r.output.split()), r.output
    r = runner.invoke(app, ["index", str(synth), "--store", str(db), *ck])  # again: nothing new
    assert r.exit_code == 0 and "44 entries (0 new" in " ".join(r.output.split()), r.output

    def search(target: str, *args: str) -> list[dict]:
        out = runner.invoke(app, ["search", target, *args, "--json"])
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)

    store = open_gallery(str(folder), readonly=True)
    for e in store.entries()[::7]:
        a = search(str(folder), "--query", e["key"], "--top-k", "8")
        b = search(str(db), "--query", e["key"], "--top-k", "8")
        assert [x["key"] for x in a] == [x["key"] for x in b]
        assert np.allclose([x["score"] for x in a], [x["score"] for x in b], atol=1e-5)
    from fastapi.testclient import TestClient

    from cmft.serve.app import create_app

    gallery = open_gallery(str(db), readonly=True)
    third = store.entries()[3]
    some = gallery.find(third["key"])
    with TestClient(create_app(str(db))) as c:
        assert c.get("/health").json()["entries"] == 44
        hits = c.post("/search", json={"id": some, "k": 5}).json()["results"]
        assert [h["key"] for h in hits] == [x["key"] for x in search(str(db), "--query", str(some), "--top-k", "5")]
        assert c.get(f"/tracklets/{some}/thumbnail").content[:3] == b"\xff\xd8\xff"
    r = runner.invoke(app, ["prune", str(db), "--key", third["key"]])
    assert r.exit_code == 0 and "1 tracklets deleted" in r.output and "43 remain" in " ".join(r.output.split()), r.output


@pytest.fixture(scope="module")
def synth_store(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from cmft.data.datasets.synthetic import SynthConfig, generate_synthetic

    root = tmp_path_factory.mktemp("milvus")
    generate_synthetic(root / "synth", SynthConfig(ids=6, train_ids=2, height=32, width=16, max_frames=14, workers=1))
    r = runner.invoke(app, ["index", str(root / "synth"), "--store", str(root / "folder"), "--checkpoint", str(tiny_checkpoint),
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    return root / "synth", root / "folder"
