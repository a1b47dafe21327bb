"""The search page in a real browser: Debian's Chromium driven by Playwright against the service under uvicorn.

Pick a query from the gallery, search, change the modality filter, upload frames, screenshot. Playwright never
downloads a browser here: it launches the system Chromium, and the test skips when either is missing.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
pytest.importorskip("faiss", reason="the serve extra (faiss-cpu) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python package) is not installed")

from test_serve import running  # noqa: E402  (uvicorn on a free localhost port, in a thread)

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
K = 3


@pytest.fixture(scope="module")
def index_folder(tiny_checkpoint: Path, vcm4: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cmft.inference import Extractor
    from cmft.search.indexing import index_dataset

    folder = tmp_path_factory.mktemp("browser") / "index"
    index_dataset(Extractor(tiny_checkpoint, device="cpu"), vcm4, folder, meta={"checkpoint": str(tiny_checkpoint)})
    return folder


def wait_results(page, predicate: str) -> None:  # noqa: ANN001
    """Wait until the results grid has finished a search and ``predicate`` (JS over ``r``, the grid) holds."""
    page.wait_for_function(f"() => {{ const r = document.getElementById('results'); "
                           f"return r.dataset.state === 'ready' && ({predicate}); }}")


def card_facts(page) -> list[dict]:  # noqa: ANN001
    return page.eval_on_selector_all(
        "[data-testid=result-card]",
        "cards => cards.map(c => ({id: Number(c.dataset.id), modality: c.dataset.modality, rank: Number(c.dataset.rank), "
        "score: c.querySelector('[data-testid=result-score]').textContent, "
        "badge: c.querySelector('[data-testid=modality]').textContent, match: c.dataset.match || null}))")


def test_search_page_in_chromium(index_folder: Path, tmp_path: Path) -> None:
    if CHROMIUM is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium); the browser test needs it")
    from fastapi.testclient import TestClient

    from cmft.serve.app import create_app

    frames = []
    rng = np.random.default_rng(3)
    for i in range(4):
        p = tmp_path / f"frame{i}.png"
        Image.fromarray(rng.integers(0, 255, (80, 40, 3), dtype=np.uint8)).save(p)
        frames.append(str(p))
    app = create_app(index_folder)
    expected = TestClient(app)  # the API's own answers, to compare with what the page shows

    with running(app) as port, sync_api.sync_playwright() as pw:
        base = f"http://127.0.0.1:{port}"
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            problems, foreign = [], []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("request", lambda r: foreign.append(r.url) if not r.url.startswith((base, "blob:", "data:")) else None)
            failed = []
            page.on("response", lambda r: failed.append((r.status, r.url)) if r.status >= 400 else None)

            page.goto(base + "/")
            page.wait_for_selector("body[data-ready=true]")
            assert re.match(r"9 tracklets \(3 infrared, 6 visible\)", page.text_content("[data-testid=status]"))
            assert page.locator("[data-testid=picker-card]").count() == 9

            # pick an infrared query; k = 3; default gallery: the other modality (visible)
            page.select_option("[data-testid=picker-modality]", "ir")
            page.wait_for_function("() => document.querySelectorAll('[data-testid=picker-card]').length === 3")
            assert set(page.eval_on_selector_all("[data-testid=picker-card]", "cs => cs.map(c => c.dataset.modality)")) == {"ir"}
            page.fill("[data-testid=k-input]", str(K))
            page.dispatch_event("[data-testid=k-input]", "change")
            query_id = int(page.get_attribute("[data-testid=picker-card] >> nth=1", "data-id"))
            page.click("[data-testid=picker-card] >> nth=1")
            wait_results(page, "r.dataset.modality === 'rgb'")
            cards = card_facts(page)
            assert len(cards) == K and [c["rank"] for c in cards] == [1, 2, 3]
            assert re.fullmatch(r"-?\d\.\d{3}", cards[0]["score"]) and cards[0]["badge"] == "RGB"
            assert all(c["modality"] == "rgb" and c["match"] in ("true", "false") for c in cards)  # identities known
            api = expected.post("/search", json={"id": query_id, "k": K}).json()["results"]
            assert [c["id"] for c in cards] == [r["id"] for r in api]
            assert [c["score"] for c in cards] == [f"{r['score']:.3f}" for r in api]
            assert page.get_attribute("[data-testid=query-card]", "data-id") == str(query_id)
            assert page.locator("[data-testid=result-card] img").count() == K  # thumbnails
            assert page.locator("[data-testid=result-card].match, [data-testid=result-card].mismatch").count() == K  # borders
            page.screenshot(path=str(tmp_path / "search_by_id.png"), full_page=True)

            # the modality filter: infrared gallery (the 2 other infrared tracklets)
            page.select_option("[data-testid=gallery-modality]", "ir")
            wait_results(page, "r.dataset.modality === 'ir'")
            ir_cards = card_facts(page)
            assert len(ir_cards) == 2 and {c["modality"] for c in ir_cards} == {"ir"} and query_id not in [c["id"] for c in ir_cards]
            assert {c["badge"] for c in ir_cards} == {"IR"}

            # upload four PNG frames as an infrared query; back to the other modality
            page.select_option("[data-testid=gallery-modality]", "")
            wait_results(page, "r.dataset.modality === 'rgb'")
            page.click("[data-testid=tab-upload]")
            page.set_input_files("[data-testid=upload-input]", frames)
            page.wait_for_function("() => document.querySelectorAll('#upload-preview img').length === 4")
            page.select_option("[data-testid=upload-modality]", "ir")
            page.click("[data-testid=upload-search]")
            page.wait_for_function("() => !document.getElementById('query-card').dataset.id")
            wait_results(page, "r.dataset.modality === 'rgb'")
            up_cards = card_facts(page)
            assert len(up_cards) == K and all(c["match"] is None for c in up_cards)  # an upload's identity is unknown
            assert "Uploaded tracklet (4 frames)" in page.text_content("[data-testid=query-card]")
            assert not page.is_visible("[data-testid=error]")

            shot = tmp_path / "search_page.png"
            page.screenshot(path=str(shot), full_page=True)
            data = shot.read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
            with Image.open(shot) as im:
                assert im.size[0] == 1280 and im.size[1] >= 900

            # a bad upload shows the service's message on the page
            bad = tmp_path / "notes.png"
            bad.write_bytes(b"not an image at all")
            page.set_input_files("[data-testid=upload-input]", [str(bad)])
            page.click("[data-testid=upload-search]")
            page.wait_for_selector("[data-testid=error]:not([hidden])")
            assert "notes.png" in page.text_content("[data-testid=error]")

            assert failed == [(415, base + "/search/upload")], failed  # only the refused upload
            assert all("415" in p for p in problems), problems  # no script error, no CSP violation
            assert foreign == [], foreign  # no request leaves the service
        finally:
            browser.close()
