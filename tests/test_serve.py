"""The search service on a real index: API answers equal the index's own search, uploads embed exactly as the
Extractor does, bad input gets clear 4xx errors, and no request reads files outside the package and index."""

from __future__ import annotations

import io
import json
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
pytest.importorskip("faiss", reason="the serve extra (faiss-cpu) is not installed")
pytest.importorskip("multipart", reason="the serve extra (python-multipart) is not installed")

from fastapi.testclient import TestClient  # noqa: E402

from cmft.inference import Extractor  # noqa: E402
from cmft.search.store import GalleryStore, open_store  # noqa: E402
from cmft.search.indexing import index_dataset  # noqa: E402
from cmft.serve.app import STATIC_DIR, create_app  # noqa: E402


@pytest.fixture(scope="module")
def index_folder(tiny_checkpoint: Path, vcm4: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vcm4's test split (3 infrared, 6 visible tracklets) indexed with the tiny checkpoint, which it records."""
    folder = tmp_path_factory.mktemp("serve") / "index"
    index_dataset(Extractor(tiny_checkpoint, device="cpu"), vcm4, folder, meta={"checkpoint": str(tiny_checkpoint)})
    return folder


@pytest.fixture(scope="module")
def index(index_folder: Path) -> GalleryStore:
    return open_store(index_folder, readonly=True)


@pytest.fixture(scope="module")
def ids(index: GalleryStore, vcm4: Path) -> list[int]:
    """The entries' ids in the order `cmft index` added them (vcm4's infrared tracklets first): ids come from keys."""
    from cmft.search.indexing import dataset_items

    return [index.find(it["key"]) for it in dataset_items(vcm4)[1]]


@pytest.fixture(scope="module")
def client(index_folder: Path) -> Iterator[TestClient]:
    with TestClient(create_app(index_folder)) as c:
        yield c


@pytest.fixture(scope="module")
def strict(index_folder: Path) -> Iterator[TestClient]:
    """Tight limits: 0.01 MB (10,485 bytes) per upload, 3 frames, 10,000 pixels per frame."""
    with TestClient(create_app(index_folder, max_upload_mb=0.01, max_frames=3, max_frame_pixels=10_000)) as c:
        yield c


def png(array: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    """An image file's bytes (PNG unless ``fmt`` says otherwise), converted to ``mode`` first when given."""
    buf = io.BytesIO()
    img = Image.fromarray(array)
    (img.convert(mode) if mode else img).save(buf, format=fmt)
    return buf.getvalue()


def noise_png(h: int, w: int, seed: int = 0) -> bytes:
    return png(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def upload(client: TestClient, frames: list[tuple[str, bytes, str]], **fields: str):  # noqa: ANN201
    return client.post("/search/upload", files=[("frames", f) for f in frames], data=fields)


def assert_clear_error(r, status: int, *words: str) -> None:  # noqa: ANN001
    assert r.status_code == status, (r.status_code, r.text)
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail
    for w in words:
        assert w.lower() in detail.lower(), (w, detail)


# -- read-only endpoints --------------------------------------------------------------------------------------
def test_health(client: TestClient, index: GalleryStore) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    h = r.json()
    assert h["status"] == "ok" and h["entries"] == len(index) == 9 and h["dim"] == index.dim
    assert h["modalities"] == {"rgb": 6, "ir": 3} and h["cameras"] == [1, 2] and h["identities"] == 3
    assert h["checkpoint"] == "last.pt" and h["uploads"] is True and h["kind"] == "flat"
    assert h["limits"]["max_frames"] == 64 and h["limits"]["max_upload_mb"] == 20
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in r.headers["content-security-policy"]


def test_list_and_filter(client: TestClient, index: GalleryStore, ids: list[int]) -> None:
    page = client.get("/tracklets").json()
    assert page["total"] == 9 and [e["id"] for e in page["items"]] == sorted(ids)
    first = page["items"][0]
    assert "frames" not in first and first["n_frames"] == len(index.entry(first["id"])["frames"])
    assert first["thumbnail_url"] == f"/tracklets/{first['id']}/thumbnail"
    ir = client.get("/tracklets", params={"modality": "ir"}).json()
    assert ir["total"] == 3 and {e["modality"] for e in ir["items"]} == {"ir"}
    cam2 = client.get("/tracklets", params={"camera": 2}).json()
    assert cam2["total"] == sum(e["camera"] == 2 for e in index.entries()) and {e["camera"] for e in cam2["items"]} == {2}
    both = client.get("/tracklets", params={"modality": "rgb", "camera": 1}).json()
    assert both["total"] == 3 and all(e["modality"] == "rgb" and e["camera"] == 1 for e in both["items"])
    paged = client.get("/tracklets", params={"offset": 4, "limit": 3}).json()
    assert [e["id"] for e in paged["items"]] == sorted(ids)[4:7] and paged["total"] == 9
    assert client.get("/tracklets", params={"pid": 12}).json()["total"] == 3
    assert_clear_error(client.get("/tracklets", params={"limit": 0}), 422, "limit")
    assert_clear_error(client.get("/tracklets", params={"modality": "thermal"}), 422, "modality")


def test_entry_and_thumbnail(client: TestClient, index: GalleryStore, index_folder: Path, ids: list[int]) -> None:
    e = client.get(f"/tracklets/{ids[4]}").json()
    assert {k: v for k, v in e.items() if k not in ("n_frames", "thumbnail_url")} == index.entry(ids[4])
    r = client.get(f"/tracklets/{ids[4]}/thumbnail")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content[:3] == b"\xff\xd8\xff" and r.content == (index_folder / e["thumbnail"]).read_bytes()
    Image.open(io.BytesIO(r.content)).verify()
    assert_clear_error(client.get("/tracklets/99"), 404, "99")
    assert_clear_error(client.get("/tracklets/99/thumbnail"), 404, "99")
    assert_clear_error(client.get("/tracklets/abc"), 422, "id", "integer")
    assert_clear_error(client.get("/tracklets/-1"), 404)


# -- search by id ---------------------------------------------------------------------------------------------
def test_search_by_id_equals_index_search(client: TestClient, index: GalleryStore) -> None:
    for q in (e for e in index.entries() if e["modality"] == "ir"):
        r = client.post("/search", json={"id": q["id"], "k": 4})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["query"]["id"] == q["id"] and body["modality"] == "rgb" and body["k"] == 4
        res = body["results"]
        assert len(res) == 4 and [x["rank"] for x in res] == [1, 2, 3, 4]
        assert all(x["modality"] == "rgb" for x in res)
        scores = [x["score"] for x in res]
        assert scores == sorted(scores, reverse=True)
        direct = index.search(index.embedding(q["id"])[None], k=4, modality="rgb", exclude=[q["id"]])[0]
        assert [x["id"] for x in res] == [i for i, _ in direct]
        assert np.allclose(scores, [s for _, s in direct], atol=1e-6)
        for x in res:
            assert x["match"] == (x["pid"] == q["pid"]) and x["key"] == index.entry(x["id"])["key"]


def test_search_filters(client: TestClient, index: GalleryStore, ids: list[int]) -> None:
    rgb_query = next(e for e in index.entries() if e["modality"] == "rgb")
    body = client.post("/search", json={"id": rgb_query["id"], "k": 10}).json()
    assert body["modality"] == "ir" and len(body["results"]) == 3  # the other modality: all 3 infrared tracklets
    same = client.post("/search", json={"id": ids[0], "k": 10, "modality": "ir"}).json()["results"]
    assert len(same) == 2 and ids[0] not in [x["id"] for x in same]  # the query itself is never a result
    cams = client.post("/search", json={"id": ids[0], "k": 10, "cameras": [1]}).json()["results"]
    direct = index.search(index.embedding(ids[0])[None], k=10, modality="rgb", cameras=[1], exclude=[ids[0]])[0]
    assert [x["id"] for x in cams] == [i for i, _ in direct] and {x["camera"] for x in cams} == {1}
    anym = client.post("/search", json={"id": ids[0], "k": 10, "modality": "any"}).json()
    assert anym["modality"] == "any" and len(anym["results"]) == 8 and {x["modality"] for x in anym["results"]} == {"rgb", "ir"}


def test_search_errors(client: TestClient) -> None:
    assert_clear_error(client.post("/search", json={"id": 99}), 404, "99")
    assert_clear_error(client.post("/search", json={"id": 0, "k": 0}), 422, "k")
    assert_clear_error(client.post("/search", json={"id": 0, "modality": "thermal"}), 422, "modality")
    assert_clear_error(client.post("/search", json={"id": 0, "cameras": ["x"]}), 422, "cameras")
    assert_clear_error(client.post("/search", json={"id": 0, "colour": 1}), 422, "colour")
    assert_clear_error(client.post("/search", json={}), 422, "id")
    assert_clear_error(client.post("/search", content=b"{not json", headers={"content-type": "application/json"}), 422)


# -- upload search --------------------------------------------------------------------------------------------
def test_upload_of_indexed_frames_equals_search_by_id(client: TestClient, index: GalleryStore, ids: list[int]) -> None:
    q = index.entry(ids[1])  # an infrared tracklet; its own JPEG frames embed to its stored embedding
    frames = [(Path(p).name, Path(p).read_bytes(), "image/jpeg") for p in q["frames"]]
    r = upload(client, frames, modality="ir", k="5")
    assert r.status_code == 200, r.text
    got = r.json()
    ref = client.post("/search", json={"id": ids[1], "k": 5}).json()
    assert got["query"]["modality"] == "ir" and got["query"]["id"] is None and got["query"]["n_frames"] == len(frames)
    assert [x["id"] for x in got["results"]] == [x["id"] for x in ref["results"]]
    assert np.allclose([x["score"] for x in got["results"]], [x["score"] for x in ref["results"]], atol=1e-5)
    assert all(x["match"] is None for x in got["results"])  # an upload's identity is unknown


def test_upload_png_frames_equal_extractor_search(client: TestClient, index: GalleryStore, tiny_checkpoint: Path,
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    paths = []
    for i in range(5):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (80, 40, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where the service may write the upload
    r = upload(client, [(p.name, p.read_bytes(), "image/png") for p in paths], modality="rgb", k="3", target="rgb",
               cameras="1, 2")
    assert r.status_code == 200, r.text
    assert list(spool.iterdir()) == []  # the temporary folder is gone after the search
    vec = Extractor(tiny_checkpoint, device="cpu")([str(p) for p in paths], "rgb")
    direct = index.search(vec, k=3, modality="rgb", cameras=[1, 2])[0]
    res = r.json()["results"]
    assert r.json()["modality"] == "rgb" and len(res) == 3
    assert [x["id"] for x in res] == [i for i, _ in direct]
    assert np.allclose([x["score"] for x in res], [s for _, s in direct], atol=1e-5)
    default = upload(client, [(p.name, p.read_bytes(), "image/png") for p in paths], modality="rgb").json()
    assert default["modality"] == "ir" and len(default["results"]) == 3  # default: the other modality, k=10 capped


def test_extractor_loads_lazily(index_folder: Path, ids: list[int]) -> None:
    with TestClient(create_app(index_folder)) as c:
        assert c.get("/health").json()["extractor_loaded"] is False
        assert c.post("/search", json={"id": ids[0]}).status_code == 200
        assert c.get("/health").json()["extractor_loaded"] is False  # searching by id needs no model
        frame = Path(c.get(f"/tracklets/{ids[0]}").json()["frames"][0])
        assert upload(c, [(frame.name, frame.read_bytes(), "image/jpeg")], modality="ir").status_code == 200
        assert c.get("/health").json()["extractor_loaded"] is True


def test_bad_uploads(client: TestClient, strict: TestClient) -> None:
    ok = noise_png(16, 8)
    assert_clear_error(upload(client, [("notes.txt", b"hello", "text/plain")], modality="ir"), 415, "notes.txt", "content type")
    assert_clear_error(upload(client, [("x.png", b"GIF89a" + b"\0" * 64, "image/png")], modality="ir"), 415, "x.png", "first bytes")
    assert_clear_error(upload(client, [("a.png", ok, "image/png"), ("fake.jpg", b"<html>hi</html>", "image/jpeg")], modality="ir"),
                       415, "frame 2", "fake.jpg")
    assert_clear_error(upload(client, [("broken.png", b"\x89PNG\r\n\x1a\n" + b"\x13" * 200, "image/png")], modality="ir"),
                       400, "broken.png", "cannot be decoded")
    jpg = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 32, 3), dtype=np.uint8)).save(jpg, format="JPEG")
    assert_clear_error(upload(client, [("cut.jpg", jpg.getvalue()[:300], "image/jpeg")], modality="ir"), 400, "cut.jpg")
    assert_clear_error(upload(client, [("a.png", ok, "image/png")]), 400, "modality", "required")
    assert_clear_error(upload(client, [("a.png", ok, "image/png")], modality="thermal"), 400, "modality")
    assert_clear_error(upload(client, [("a.png", ok, "image/png")], modality="ir", target="uv"), 400, "target")
    assert_clear_error(upload(client, [("a.png", ok, "image/png")], modality="ir", k="ten"), 400, "'k'")
    assert_clear_error(upload(client, [("a.png", ok, "image/png")], modality="ir", k="0"), 400, "'k'")
    assert_clear_error(upload(client, [("a.png", ok, "image/png")], modality="ir", cameras="one"), 400, "cameras")
    assert_clear_error(upload(client, [("a.png", ok, "image/png")], modality="ir", colour="red"), 400, "colour")
    assert_clear_error(client.post("/search/upload", data={"modality": "ir"}), 400, "no frames")
    assert_clear_error(client.post("/search/upload", json={"modality": "ir"}), 415, "multipart")
    # limits: 10,485 bytes per upload, 3 frames, 10,000 pixels per frame
    small, big = noise_png(48, 48, 1), noise_png(80, 80, 2)
    assert 5_300 < len(small) < 10_000 and len(big) > 10_485
    assert strict.post("/search/upload", files=[("frames", ("s.png", small, "image/png"))], data={"modality": "ir"}).status_code == 200
    assert_clear_error(upload(strict, [("big.png", big, "image/png")], modality="ir"), 413, "big.png", "limit")
    assert_clear_error(upload(strict, [("s1.png", small, "image/png"), ("s2.png", small, "image/png")], modality="ir"),
                       413, "together")
    assert_clear_error(upload(strict, [("huge.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 1_200_000, "image/png")], modality="ir"),
                       413, "limit")  # refused from Content-Length, before parsing
    assert_clear_error(upload(strict, [(f"{i}.png", ok, "image/png") for i in range(4)], modality="ir"), 400, "at most 3")
    wide = png(np.zeros((200, 100, 3), np.uint8))
    assert len(wide) < 10_000
    assert_clear_error(upload(strict, [("wide.png", wide, "image/png")], modality="ir"), 413, "wide.png", "pixel")


def test_upload_without_checkpoint(tiny_checkpoint: Path, vcm4: Path, tmp_path: Path) -> None:
    folder = tmp_path / "index"
    store = index_dataset(Extractor(tiny_checkpoint, device="cpu"), vcm4, folder)  # records no checkpoint
    frame = ("a.png", noise_png(16, 8), "image/png")
    with TestClient(create_app(folder)) as c:
        assert c.get("/health").json()["uploads"] is False
        assert c.post("/search", json={"id": store.entries()[0]["id"]}).status_code == 200
        assert_clear_error(upload(c, [frame], modality="ir"), 503, "--checkpoint")
    with TestClient(create_app(folder, checkpoint=tmp_path / "missing.pt")) as c:
        assert_clear_error(upload(c, [frame], modality="ir"), 503, "missing.pt")



def test_upload_refuses_another_model(index_folder: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    import torch

    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][name] = ckpt["model"][name] + 0.01  # other weights: embeddings no longer comparable
    other = tmp_path / "other.pt"
    torch.save(ckpt, other)
    with TestClient(create_app(index_folder, checkpoint=other)) as c:
        assert_clear_error(upload(c, [("a.png", noise_png(16, 8), "image/png")], modality="ir"), 503, "other.pt", "another model")


# -- files: the page, and nothing outside the package and index folders ---------------------------------------
def test_page_and_static_files(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'src="/static/app.js"' in r.text and 'href="/static/style.css"' in r.text and 'data-testid="results"' in r.text
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css"), ("favicon.svg", "image/svg+xml")):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
    for f in STATIC_DIR.iterdir():  # no external asset: no URL with a scheme or protocol-relative //host
        text = f.read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")  # a namespace name, not a fetch
        assert "http://" not in text and "https://" not in text and 'src="//' not in text and "@import" not in text, f


TRAVERSALS = [
    "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/static/%2e%2e/app.py",
    "/static/..%2fapp.py",
    "/static/%2fetc%2fpasswd",
    "/static//etc/passwd",
    "/static/%5c..%5capp.py",
    "/tracklets/..%2f..%2fetc%2fpasswd/thumbnail",
    "/tracklets/%2e%2e/thumbnail",
    "/%2e%2e/%2e%2e/etc/passwd",
]


def test_path_traversal_through_urls(client: TestClient) -> None:
    app_py = (STATIC_DIR.parent / "app.py").read_text()
    for url in TRAVERSALS:
        r = client.get(url)
        assert r.status_code in (400, 404, 405, 422), (url, r.status_code)
        assert b"root:" not in r.content and b"create_app" not in r.content, url
    assert "create_app" in app_py  # the file the requests above tried to reach


@contextmanager
def running(app) -> Iterator[int]:  # noqa: ANN001
    """The app under uvicorn on a free localhost port, in a background thread."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def raw_get(port: int, target: str) -> bytes:
    """A GET sent byte for byte (no client-side normalisation of ``..``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_path_traversal_over_the_wire(index_folder: Path) -> None:
    with running(create_app(index_folder)) as port:
        assert raw_get(port, "/static/style.css").startswith(b"HTTP/1.1 200")
        for target in ["/static/../../../../../../etc/passwd", "/static/../app.py", "/static/./../app.py",
                       "/tracklets/0/../../../../etc/passwd", *TRAVERSALS]:
            reply = raw_get(port, target)
            status = reply.split(b"\r\n", 1)[0]
            assert b" 200 " not in status, (target, status)
            assert b"root:" not in reply and b"create_app" not in reply, target


def _tamper(folder: Path, id: int, **fields: object) -> None:  # noqa: A002
    """Rewrite an entry's JSON (and its checksum) as a tampered store would hold it."""
    import json as _json

    from cmft.search.store import GalleryStore, _crc

    st = GalleryStore(folder)
    doc = {k: v for k, v in {**st.entry(id), **fields}.items() if k != "id"}
    text = _json.dumps(doc)
    st._tbl.update(where=f"id = {id}", values={"doc": text, "crc": _crc(st.embedding(id), text)})


def test_crafted_thumbnail_entries_stay_in_thumbs(index_folder: Path, ids: list[int], tmp_path: Path) -> None:
    folder = tmp_path / "index"
    shutil.copytree(index_folder, folder)
    store = GalleryStore(folder)
    secret = b"\xff\xd8\xff\xe0 SECRET"  # JPEG magic, so only the location check can refuse it
    (folder / "secret.jpg").write_bytes(secret)
    (tmp_path / "outside.jpg").write_bytes(secret)
    (folder / "thumbs" / "note.txt").write_bytes(secret)
    linked = folder / store.entry(ids[3])["thumbnail"]
    linked.unlink()
    linked.symlink_to(tmp_path / "outside.jpg")
    crafted = {0: "../secret.jpg", 1: "thumbs/../secret.jpg", 2: "thumbs/../../outside.jpg", 4: str(tmp_path / "outside.jpg"),
               5: "thumbs/note.txt", 6: None}
    for i, rel in crafted.items():
        _tamper(folder, ids[i], thumbnail=rel)
    with TestClient(create_app(folder)) as c:
        for i in (*crafted, 3):
            r = c.get(f"/tracklets/{ids[i]}/thumbnail")
            assert r.status_code == 404, (i, r.status_code)
            assert b"SECRET" not in r.content
        r = c.get(f"/tracklets/{ids[7]}/thumbnail")  # an untouched entry still works
        assert r.status_code == 200 and r.content[:3] == b"\xff\xd8\xff"


# -- the command --------------------------------------------------------------------------------------------
def test_cli_serve(index_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from cmft.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["serve", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "no such index folder" in r.output
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "gallery.lance" / "_versions").mkdir(parents=True)
    (bad / "gallery.lance" / "_versions" / "1.manifest").write_bytes(b"{not a manifest" * 100)
    r = runner.invoke(app, ["serve", str(bad)])
    out = " ".join(r.output.split())
    assert r.exit_code == 2 and "gallery.lance" in out and "cannot read the gallery store" in out, out
    r = runner.invoke(app, ["serve", str(index_folder), "--checkpoint", str(tmp_path / "none.pt")])
    assert r.exit_code == 2 and "none.pt" in r.output
    seen = {}

    def run(server: uvicorn.Server, sockets: list) -> None:
        seen.update(app=server.config.app, host=server.config.host, address=sockets[0].getsockname())
        sockets[0].close()

    monkeypatch.setattr(uvicorn.Server, "run", run)
    port = _free_port()
    r = runner.invoke(app, ["serve", str(index_folder), "--port", str(port), "--max-upload-mb", "5"])
    assert r.exit_code == 0, r.output
    assert seen["host"] == "127.0.0.1" and seen["address"] == ("127.0.0.1", port)
    with TestClient(seen["app"]) as c:
        h = c.get("/health").json()
        assert h["entries"] == 9 and h["limits"]["max_upload_mb"] == 5


def test_cli_serve_on_a_busy_port(index_folder: Path) -> None:
    """A port another program listens on: exit 2 with the port named, and no "serving ..." line before it."""
    import subprocess

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "cmft", "serve", str(index_folder), "--port", str(port)],
                           capture_output=True, text=True, timeout=120)
    out = " ".join(r.stderr.split())
    assert r.returncode == 2, out
    assert f"error: port {port} is in use" in out and "serving" not in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _upload_layer(r) -> str:  # noqa: ANN001
    """Which check answered an upload: the form fields, the content type, the first bytes, the image decoder,
    or none (embedded and ranked)."""
    if r.status_code == 200:
        return "embedded"
    detail = r.json()["detail"]
    if "content type" in detail:
        return "content type"
    if "is not a JPEG, PNG or BMP image" in detail:
        return "first bytes"
    if "cannot be decoded" in detail or "has no pixels" in detail or "pixel" in detail:
        return "decoder"
    if "form field" in detail or "no frames" in detail:
        return "fields"
    raise AssertionError(f"an answer of no known layer: {r.status_code} {detail}")


def test_fuzzed_uploads_get_a_clear_answer(client: TestClient, tmp_path: Path) -> None:
    """Uploads with mostly valid form fields and frames that are real images of odd sizes and modes, images
    broken after a valid header, wrong content types, or random bytes: 200 with ranked results or a 4xx with a
    message, never a 500, nothing written outside the temporary folder. Every layer (fields, content type, first
    bytes, decoder, embedding) is reached at least 3 times."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    layers = {k: 0 for k in ("fields", "content type", "first bytes", "decoder", "embedded")}
    rng = np.random.default_rng(3)

    def real(draw_shape: tuple[int, int], fmt: str, mode: str | None) -> bytes:
        return png(rng.integers(0, 255, (*draw_shape, 3), dtype=np.uint8), fmt, mode)

    ctype_of = {"PNG": "image/png", "JPEG": "image/jpeg", "BMP": "image/bmp"}
    image = st.tuples(st.sampled_from([(24, 12), (1, 1), (3, 200), (64, 32)]), st.sampled_from(["PNG", "JPEG", "BMP"]),
                      st.sampled_from([None, "L", "RGBA", "P"])).filter(
        lambda t: not (t[1] == "JPEG" and t[2] in ("RGBA", "P")) and not (t[1] == "BMP" and t[2] == "RGBA"))

    def frame(kind: str, shape: tuple, fmt: str, mode: str | None, cut: int, noise: bytes, name: str) -> tuple[str, bytes, str]:
        data = real(shape, fmt, mode)
        if kind == "broken":  # the header stays, so the first bytes pass; the rest is cut or overwritten
            keep = 8 + cut % max(len(data) - 8, 1)
            data = data[:keep] + noise if cut % 2 else data[:keep]
        elif kind == "random":
            data = noise
        ctype = "text/plain" if kind == "wrong type" else ctype_of[fmt]
        return (name, data, ctype)

    name = st.text(min_size=1, max_size=12).filter(lambda n: "/" not in n and "\x00" not in n)

    def frames(first: str) -> st.SearchStrategy:
        """1-3 frames: the first of kind ``first``, the others good, each with fuzzed size, mode, damage and name."""
        one = lambda kind: st.tuples(image, st.integers(0, 10**6), st.binary(min_size=1, max_size=64), name).map(  # noqa: E731
            lambda t: frame(kind, *t[0], t[1], t[2], t[3]))
        return st.tuples(one(first), st.lists(one("good"), max_size=2)).map(lambda t: [t[0], *t[1]])

    good_fields = st.fixed_dictionaries({"modality": st.sampled_from(["ir", "rgb"]), "k": st.sampled_from(["", "1", "5", "10"])})
    bad_fields = st.one_of(
        st.fixed_dictionaries({"modality": st.sampled_from(["", "thermal", "IR ", "rgb,ir"]), "k": st.sampled_from(["", "5"])}),
        st.fixed_dictionaries({"modality": st.sampled_from(["ir", "rgb"]), "k": st.sampled_from(["-3", "x", "0", "100000"])}))
    # one run per layer aimed at (the answer decides which layer is counted): every layer gets its share
    aims = {"fields": (frames("good"), bad_fields), "content type": (frames("wrong type"), good_fields),
            "first bytes": (frames("random"), good_fields), "decoder": (frames("broken"), good_fields),
            "embedded": (frames("good"), good_fields)}

    def check(files: list[tuple[str, bytes, str]], form: dict[str, str]) -> None:
        r = upload(client, files, **{key: v for key, v in form.items() if v})
        assert r.status_code == 200 or 400 <= r.status_code < 500, (r.status_code, r.text)
        layer = _upload_layer(r)
        layers[layer] += 1
        if layer == "embedded":
            body = r.json()
            assert body["query"]["n_frames"] == len(files) and body["results"]
            assert all(row["modality"] != body["query"]["modality"] for row in body["results"])  # cross-modal by default
        else:
            assert isinstance(r.json()["detail"], str) and r.json()["detail"]

    before = set(Path.cwd().iterdir())
    for files, form in aims.values():
        settings(max_examples=12, deadline=None, derandomize=True, database=None,
                 suppress_health_check=list(HealthCheck))(given(files=files, form=form)(check))()
    assert set(Path.cwd().iterdir()) == before
    print("uploads: " + ", ".join(f"{k} {v}" for k, v in layers.items()))
    assert all(v >= 3 for v in layers.values()), layers


def test_service_under_concurrent_load(tmp_path: Path) -> None:
    """The short version of benchmarks/bench_serve.py: a real `cmft serve` process, concurrent clients with the
    mixed request load for a few seconds: no unexpected status, no 5xx, no exception in any client thread, the
    deliberate bad requests get their 4xx, and the server is alive and answering at the end."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_serve.py"
    proc = subprocess.run([sys.executable, str(script), "--entries", "300", "--clients", "2", "--seconds", "4",
                           "--no-write", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(next(line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")))
    assert r["unexpected_errors"] == {} and r["server_errors_5xx"] == {} and r["client_exceptions"] == {}
    assert r["server_alive_at_end"] is True
    assert set(r["endpoints"]) == {"/search", "/search/upload", "/tracklets", "/tracklets/{id}/thumbnail"}
    assert all(e["count"] > 0 for e in r["endpoints"].values()) and sum(r["deliberate_bad_answered_right"].values()) > 0


def test_service_searches_while_cmft_index_appends_and_compacts(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """A read-only service over a store that a real `cmft index` process is growing (2 tracklets a transaction)
    and then compacting: concurrent searches and health checks all answer 200, the entry count only grows,
    and the service ends up seeing every committed tracklet without a restart."""
    import subprocess
    import sys

    from cmft.data.datasets.synthetic import SynthConfig, generate_synthetic
    from cmft.search.store import open_store

    synth = tmp_path / "synth"
    generate_synthetic(synth, SynthConfig(ids=6, train_ids=2, height=32, width=16, max_frames=14, workers=1))
    store = tmp_path / "store"
    first = next(p for p in sorted(synth.rglob("*")) if p.is_dir() and p.parent.name == "ir")  # one camera's frames
    ck = ["--checkpoint", str(tiny_checkpoint), "--device", "cpu"]
    cmd = [sys.executable, "-m", "cmft", "index"]
    subprocess.run([*cmd, str(first), "--modality", "ir", "--camera", "9", "--store", str(store), *ck], check=True,
                   capture_output=True, timeout=300)
    errors: list[str] = []
    seen: dict[int, list[int]] = {}  # per client thread, the entry counts it saw in order
    answers: list[list[tuple[int, str, float]]] = []
    stop = threading.Event()
    with open_store(store, readonly=True) as st:
        qid = st.entries()[0]["id"]
        version0 = st.version
    with TestClient(create_app(store)) as c:
        def hammer() -> None:
            counts = seen.setdefault(threading.get_ident(), [])
            while not stop.is_set():
                h = c.get("/health")
                s = c.post("/search", json={"id": qid, "k": 5, "modality": "any"})
                if h.status_code != 200 or s.status_code != 200:
                    errors.append(f"{h.status_code} {s.status_code} {s.text[:200]}")
                else:
                    counts.append(h.json()["entries"])
                    answers.append([(r["id"], r["key"], r["score"]) for r in s.json()["results"]])

        workers = [threading.Thread(target=hammer) for _ in range(2)]
        for w in workers:
            w.start()
        try:
            subprocess.run([*cmd, str(synth), "--store", str(store), "--commit-every", "2", "--no-compact", *ck], check=True,
                           capture_output=True, timeout=300)
            subprocess.run([*cmd, "--store", str(store), "--compact"], check=True, capture_output=True, timeout=300)
            time.sleep(0.5)
        finally:
            stop.set()
            for w in workers:
                w.join()
        final = c.get("/health").json()["entries"]
        last = [(r["id"], r["key"], r["score"]) for r in c.post("/search", json={"id": qid, "k": 5, "modality": "any"}).json()["results"]]
    assert not errors, errors[:3]
    for counts in seen.values():  # appends seen as they were committed, never lost
        assert len(set(counts)) > 2 and counts == sorted(counts)
    with open_store(store, readonly=True) as st:
        assert final == len(st) == 45 and st.version > version0 + 10
        assert {ix.columns[0] for ix in st._tbl.list_indices()} >= {"id", "key", "modality"}  # optimized under the readers
        # every answer given while the store grew ranked true entries with their own vectors (nothing is deleted here)
        q = st.embedding(qid)
        assert answers and all(st.entry(i)["key"] == key and abs(float(st.embedding(i) @ q) - score) < 1e-5
                               for a in answers for i, key, score in a)
        # the final answer equals a store built the same way in one step
        subprocess.run([*cmd, str(first), "--modality", "ir", "--camera", "9", "--store", str(tmp_path / "ref"), *ck],
                       check=True, capture_output=True, timeout=300)
        subprocess.run([*cmd, str(synth), "--store", str(tmp_path / "ref"), *ck], check=True, capture_output=True, timeout=300)
        with open_store(tmp_path / "ref", readonly=True) as ref:
            want = [(i, ref.entry(i)["key"], s) for i, s in ref.search(ref.embedding(qid), k=5, exclude=[qid])[0]]
        assert [(i, key) for i, key, _ in last] == [(i, key) for i, key, _ in want]
        assert np.allclose([s for *_, s in last], [s for *_, s in want], atol=1e-6)
