// cmft gallery search page: pick or upload a query tracklet, rank the gallery across modalities.
// Plain DOM, no libraries; every server string goes through textContent (never innerHTML).
"use strict";

(() => {
  const PAGE = 24;
  const MODALITY_NAME = { rgb: "visible", ir: "infrared" };
  const $ = (id) => document.getElementById(id);

  const state = {
    health: null,
    pickerOffset: 0,
    pickerTotal: 0,
    query: null,        // {kind: "id", id, entry} | {kind: "upload", files, modality}
    searchToken: 0,
    previewUrls: [],
  };

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-") || key.startsWith("aria-") || ["src", "alt", "title", "type", "role", "loading"].includes(key)) {
        node.setAttribute(key, value === true ? "" : String(value));
      } else node[key] = value;
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  async function api(path, options = {}) {
    let response;
    try {
      response = await fetch(path, options);
    } catch (e) {
      throw new Error(`cannot reach the service (${e.message})`);
    }
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    if (!response.ok) {
      const detail = body && typeof body.detail === "string" ? body.detail : `HTTP ${response.status}`;
      throw new Error(detail);
    }
    return body;
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message || "";
    box.hidden = !message;
  }

  function modalityBadge(modality) {
    return el("span", { class: `badge ${modality}`, "data-testid": "modality", text: modality === "ir" ? "IR" : "RGB",
                        title: MODALITY_NAME[modality] || modality });
  }

  function thumb(entry, alt) {
    if (entry && entry.thumbnail_url) return el("img", { src: entry.thumbnail_url, alt, loading: "lazy" });
    return el("div", { class: "noimg", text: "no thumbnail" });
  }

  // ---- status and filters from /health -----------------------------------------------------------------
  async function loadHealth() {
    const h = await api("/health");
    state.health = h;
    const mods = `${h.modalities.ir} infrared, ${h.modalities.rgb} visible`;
    const ids = h.identities ? ` · ${h.identities} identities` : "";
    const uploads = h.uploads ? "uploads on" : "uploads off (no checkpoint)";
    $("status").textContent = `${h.entries} tracklets (${mods})${ids} · ${h.dim}-d ${h.kind} index · ${uploads}`;
    const pickerCamera = $("picker-camera");
    const boxes = $("gallery-cameras");
    for (const cam of h.cameras) {
      pickerCamera.append(el("option", { value: String(cam), text: `camera ${cam}` }));
      const box = el("input", { type: "checkbox", value: String(cam), "data-testid": `camera-${cam}` });
      box.checked = true;
      box.addEventListener("change", () => rerun());
      boxes.append(el("label", {}, box, document.createTextNode(String(cam))));
    }
    $("upload-limits").textContent =
      `At most ${h.limits.max_frames} frames and ${h.limits.max_upload_mb} MB per upload.` +
      (h.uploads ? "" : " This service has no checkpoint, so upload search is off.");
  }

  // ---- the gallery picker --------------------------------------------------------------------------------
  async function loadPicker() {
    const params = new URLSearchParams({ offset: String(state.pickerOffset), limit: String(PAGE) });
    if ($("picker-modality").value) params.set("modality", $("picker-modality").value);
    if ($("picker-camera").value) params.set("camera", $("picker-camera").value);
    const pid = $("picker-pid").value.trim();
    if (pid !== "") params.set("pid", pid);
    let page;
    try {
      page = await api(`/tracklets?${params}`);
    } catch (e) {
      showError(`listing the gallery: ${e.message}`);
      return;
    }
    state.pickerTotal = page.total;
    const grid = $("picker-grid");
    grid.replaceChildren();
    for (const entry of page.items) {
      const card = el("button", { type: "button", class: "pick", "data-testid": "picker-card", "data-id": entry.id,
                                  "data-modality": entry.modality, title: `tracklet ${entry.id}: ${entry.key}` },
        thumb(entry, `tracklet ${entry.id}`),
        el("span", { class: "cap" }, modalityBadge(entry.modality), document.createTextNode(` c${entry.camera}`)),
        el("span", { class: "cap", text: entry.pid === null || entry.pid === undefined ? `#${entry.id}` : `#${entry.id} · id ${entry.pid}` }));
      if (state.query && state.query.kind === "id" && state.query.id === entry.id) card.classList.add("selected");
      card.addEventListener("click", () => pickQuery(entry.id));
      grid.append(card);
    }
    if (!page.items.length) grid.append(el("p", { class: "hint", text: "No tracklet matches these filters." }));
    const last = Math.min(state.pickerOffset + PAGE, page.total);
    $("picker-page").textContent = page.total ? `${state.pickerOffset + 1}–${last} of ${page.total}` : "0 of 0";
    $("picker-prev").disabled = state.pickerOffset === 0;
    $("picker-next").disabled = last >= page.total;
  }

  async function pickQuery(id) {
    showError("");
    let entry;
    try {
      entry = await api(`/tracklets/${encodeURIComponent(id)}`);
    } catch (e) {
      showError(e.message);
      return;
    }
    state.query = { kind: "id", id, entry };
    for (const card of document.querySelectorAll("#picker-grid .pick")) {
      card.classList.toggle("selected", Number(card.dataset.id) === id);
    }
    $("search-button").disabled = false;
    await runSearch();
  }

  // ---- uploads -------------------------------------------------------------------------------------------
  function onFilesChosen() {
    for (const url of state.previewUrls) URL.revokeObjectURL(url);
    state.previewUrls = [];
    const files = Array.from($("upload-input").files || []);
    const preview = $("upload-preview");
    preview.replaceChildren();
    for (const file of files.slice(0, 16)) {
      const url = URL.createObjectURL(file);
      state.previewUrls.push(url);
      preview.append(el("img", { src: url, alt: file.name, title: file.name }));
    }
    if (files.length > 16) preview.append(el("span", { class: "hint", text: `+${files.length - 16} more` }));
    $("upload-search").disabled = files.length === 0 || !(state.health && state.health.uploads);
  }

  async function uploadQuery() {
    const files = Array.from($("upload-input").files || []);
    if (!files.length) return;
    state.query = { kind: "upload", files, modality: $("upload-modality").value };
    for (const card of document.querySelectorAll("#picker-grid .pick.selected")) card.classList.remove("selected");
    $("search-button").disabled = false;
    await runSearch();
  }

  // ---- search --------------------------------------------------------------------------------------------
  function filters() {
    const boxes = Array.from(document.querySelectorAll("#gallery-cameras input[type=checkbox]"));
    const chosen = boxes.filter((b) => b.checked).map((b) => Number(b.value));
    let k = parseInt($("k-input").value, 10);
    if (!Number.isFinite(k) || k < 1) k = 10;
    return {
      modality: $("gallery-modality").value || null,
      cameras: chosen.length === boxes.length ? null : chosen,
      k,
    };
  }

  function rerun() {
    if (state.query) runSearch();
  }

  async function runSearch() {
    if (!state.query) return;
    const token = ++state.searchToken;
    const f = filters();
    const results = $("results");
    results.dataset.state = "loading";
    showError("");
    if (f.cameras && f.cameras.length === 0) {
      render({ query: state.query.entry || uploadedQuery(), modality: f.modality, k: f.k, results: [] }, f);
      showError("Tick at least one camera.");
      return;
    }
    let data;
    try {
      if (state.query.kind === "id") {
        data = await api("/search", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ id: state.query.id, k: f.k, modality: f.modality, cameras: f.cameras }),
        });
      } else {
        const form = new FormData();
        for (const file of state.query.files) form.append("frames", file, file.name);
        form.append("modality", state.query.modality);
        form.append("k", String(f.k));
        if (f.modality) form.append("target", f.modality);
        if (f.cameras) form.append("cameras", f.cameras.join(","));
        data = await api("/search/upload", { method: "POST", body: form });
      }
    } catch (e) {
      if (token !== state.searchToken) return;
      results.dataset.state = "error";
      showError(`search failed: ${e.message}`);
      return;
    }
    if (token !== state.searchToken) return;  // a newer search is on its way
    render(data, f);
  }

  function uploadedQuery() {
    return { id: null, modality: state.query.modality, pid: null, camera: null, n_frames: state.query.files.length };
  }

  function renderQuery(query) {
    const card = $("query-card");
    card.classList.remove("empty");
    const thumbs = el("div", { class: "thumbs" });
    if (state.query.kind === "upload") {
      for (const url of state.previewUrls.slice(0, 4)) thumbs.append(el("img", { src: url, alt: "uploaded frame" }));
    } else {
      thumbs.append(thumb(query, `query tracklet ${query.id}`));
    }
    const title = state.query.kind === "upload" ? `Uploaded tracklet (${query.n_frames} frames)` : `Tracklet #${query.id}`;
    const facts = el("div", { class: "facts" },
      el("span", { class: "title", text: title }),
      el("span", { class: "line" }, modalityBadge(query.modality),
         document.createTextNode(` ${MODALITY_NAME[query.modality] || query.modality}` +
                                 (query.camera !== null && query.camera !== undefined ? ` · camera ${query.camera}` : ""))),
      el("span", { text: query.pid !== null && query.pid !== undefined ? `identity ${query.pid}` : "identity unknown" }));
    if (query.time) facts.append(el("span", { text: `time ${query.time}` }));
    card.replaceChildren(thumbs, facts);
    card.dataset.modality = query.modality;
    if (query.id !== null && query.id !== undefined) card.dataset.id = query.id; else delete card.dataset.id;
  }

  function render(data, f) {
    renderQuery(data.query);
    const results = $("results");
    results.replaceChildren();
    for (const r of data.results) {
      const known = r.match === true || r.match === false;
      const card = el("div", { class: `card${known ? (r.match ? " match" : " mismatch") : ""}`, "data-testid": "result-card",
                               "data-id": r.id, "data-rank": r.rank, "data-modality": r.modality,
                               "data-match": known ? String(r.match) : null, title: r.key },
        el("span", { class: "rank", "data-testid": "result-rank", text: `#${r.rank}` }),
        thumb(r, `rank ${r.rank}: tracklet ${r.id}`),
        el("div", { class: "meta" },
          el("span", { class: "score", "data-testid": "result-score", text: r.score.toFixed(3) }),
          el("span", { class: "line" }, modalityBadge(r.modality), document.createTextNode(` cam ${r.camera}`)),
          el("span", { class: `pid${r.pid !== null && r.pid !== undefined ? " known" : ""}`, "data-testid": "result-pid",
                       text: r.pid !== null && r.pid !== undefined ? `id ${r.pid}` : `#${r.id}` })));
      results.append(card);
    }
    const where = data.modality === "any" ? "both modalities" : (MODALITY_NAME[data.modality] || data.modality);
    let summary = `${data.results.length} best of the ${where} gallery` + (f.cameras ? ` (cameras ${f.cameras.join(", ")})` : "");
    const judged = data.results.filter((r) => r.match === true || r.match === false);
    if (judged.length) {
      const hits = judged.filter((r) => r.match).length;
      summary += ` · ${hits} of ${judged.length} share the query's identity (green border: same, red: different)`;
    }
    if (!data.results.length) summary = `No ${where} tracklet passes these filters.`;
    $("results-summary").textContent = summary;
    results.dataset.modality = data.modality || "";
    results.dataset.count = String(data.results.length);
    results.dataset.state = "ready";
  }

  // ---- wiring --------------------------------------------------------------------------------------------
  function selectTab(which) {
    const upload = which === "upload";
    $("tab-index").classList.toggle("active", !upload);
    $("tab-upload").classList.toggle("active", upload);
    $("tab-index").setAttribute("aria-selected", String(!upload));
    $("tab-upload").setAttribute("aria-selected", String(upload));
    $("pane-index").hidden = upload;
    $("pane-upload").hidden = !upload;
  }

  function resetPicker() {
    state.pickerOffset = 0;
    loadPicker();
  }

  function wire() {
    $("tab-index").addEventListener("click", () => selectTab("index"));
    $("tab-upload").addEventListener("click", () => selectTab("upload"));
    $("picker-modality").addEventListener("change", resetPicker);
    $("picker-camera").addEventListener("change", resetPicker);
    $("picker-pid").addEventListener("change", resetPicker);
    $("picker-prev").addEventListener("click", () => { state.pickerOffset = Math.max(0, state.pickerOffset - PAGE); loadPicker(); });
    $("picker-next").addEventListener("click", () => { state.pickerOffset += PAGE; loadPicker(); });
    $("upload-input").addEventListener("change", onFilesChosen);
    $("upload-modality").addEventListener("change", () => {
      if (state.query && state.query.kind === "upload") { state.query.modality = $("upload-modality").value; runSearch(); }
    });
    $("upload-search").addEventListener("click", uploadQuery);
    $("gallery-modality").addEventListener("change", rerun);
    $("k-input").addEventListener("change", rerun);
    $("filters").addEventListener("submit", (e) => { e.preventDefault(); rerun(); });
  }

  async function start() {
    wire();
    try {
      await loadHealth();
    } catch (e) {
      $("status").textContent = "service unavailable";
      showError(e.message);
      return;
    }
    await loadPicker();
    document.body.dataset.ready = "true";
  }

  document.addEventListener("DOMContentLoaded", start);
})();
