// Scan animation (gr.HTML js_on_load body: `element`, `props`, `watch` are gradio's).
// props.value is the JSON of app/views/scans.py `animation_payload`: every layer's scan orders
// and, for traced layers, each branch's hidden-state magnitude by scan position. Play, pause,
// scrub and the walk through the layers all run in the browser.
const CYCLE = ["#dbe4ff", "#d3f9d8", "#fff3bf", "#ffe3e3"];
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
const fmt = (v) => (!Number.isFinite(v) ? "–" : Math.abs(v) < 0.01 && v !== 0 ? v.toExponential(2) : v.toPrecision(3));
const GLYPH = { "row-major": "rows →", "row-major reversed": "rows ←", "column-major": "columns ↓", "column-major reversed": "columns ↑" };

if (!document.getElementById("sa-style")) {
  const st = document.createElement("style");
  st.id = "sa-style";
  st.textContent = `
.sa-root{font:13px system-ui,sans-serif;color:#212529}
.sa-root svg text{fill:#212529;font-family:system-ui,sans-serif}
.sa-strip{display:flex;flex-wrap:wrap;gap:6px;align-items:center;margin:4px 0 8px 0}
.sa-strip button{border:1px solid #868e96;border-radius:8px;padding:3px 8px;font-size:12px;cursor:pointer;line-height:1.25;color:#212529}
.sa-strip button.sa-sel{border:3px solid #d9480f;font-weight:600}
.sa-strip .sa-attn{font-weight:700;color:#862e9c;background:#f3d9fa;border-radius:4px;padding:1px 4px}
.sa-controls{display:flex;flex-wrap:wrap;gap:12px;align-items:center;margin:6px 0}
.sa-controls button{min-width:84px;padding:4px 10px;border-radius:8px;border:1px solid #adb5bd;background:#fff4e6;cursor:pointer;font-size:13px;color:#212529}
.sa-controls input[type=range]{width:340px}
.sa-panels{display:flex;flex-wrap:wrap;gap:18px}
.sa-panel{background:#fff;border:1px solid #dee2e6;border-radius:10px;padding:8px}
.sa-panel h4{margin:0 0 4px 0;font-size:13px;font-weight:600}
.sa-sub{font-size:11.5px;color:#495057;max-width:330px;margin:3px 0 0 0}
.sa-note{font-size:12px;color:#495057;margin:4px 0}
`;
  document.head.appendChild(st);
}

let D = null, layerIdx = 0, frame = 0, playing = false, last = 0, acc = 0, raf = 0;
let P = {}; // per branch: {cells, pts, line, cursor, clip, marker, pos2tok, state, scale}
const G = 320, CH = 80;

function root() { return element.querySelector(".sa-root"); }
function L() { return D.side * D.side; }

function render() {
  let data;
  try { data = JSON.parse(props.value || "{}"); } catch (e) { data = { kind: "empty", note: String(e) }; }
  stop();
  D = data;
  element.innerHTML = "";
  const r = document.createElement("div");
  r.className = "sa-root";
  element.appendChild(r);
  if (data.kind !== "scan") { r.innerHTML = `<div class="sa-note">${esc(data.note || "")}</div>`; return; }
  layerIdx = Math.max(0, data.layers.findIndex((l) => l.layer === data.layer));
  let h = `<div class="sa-strip" id="sa-strip">` + data.layers.map((l, i) => {
    const sp = l.spatial_name ? GLYPH[l.spatial_name] || l.spatial_name : "attention";
    const fq = l.freq_name ? l.freq_name.replace("window scan, ", "win ") : "";
    return `<button data-layer-index="${i}" style="background:${CYCLE[l.cycle]}" title="layer ${l.layer}: position ${l.cycle} of the 4-layer cycle">L${l.layer}<br>S: ${esc(sp)}<br>F: ${esc(fq)}</button>` + (l.attn_after ? `<span class="sa-attn" title="the shared attention block runs here">A</span>` : "");
  }).join("") + `</div><div class="sa-note" id="sa-cycle"></div>`;
  h += `<div class="sa-controls"><button id="sa-play" type="button">▶ Play</button>` +
    `<input id="sa-scrub" type="range" min="0" max="${L() - 1}" step="1" value="0" aria-label="scan position">` +
    `<span id="sa-pos" style="font-variant-numeric:tabular-nums;min-width:200px"></span>` +
    `<label>speed <select id="sa-speed"><option value="16">16 tokens/s</option><option value="48" selected>48 tokens/s</option><option value="128">128 tokens/s</option></select></label>` +
    `<label><input id="sa-through" type="checkbox"> continue through the layers (watch the 4-layer cycle repeat)</label></div>`;
  h += `<div class="sa-panels" id="sa-panels"></div>`;
  if (data.note) h += `<div class="sa-note">${esc(data.note)}</div>`;
  r.innerHTML = h;
  r.querySelector("#sa-play").addEventListener("click", () => (playing ? stop() : play()));
  r.querySelector("#sa-scrub").addEventListener("input", (e) => { stop(); setFrame(+e.target.value); });
  r.querySelector("#sa-strip").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-layer-index]");
    if (b) { stop(); showLayer(+b.dataset.layerIndex); }
  });
  showLayer(layerIdx);
}

function panel(kind, lay) {
  const side = D.side, n = L(), cs = G / side;
  const order = lay[kind];
  const state = lay.state ? lay.state[kind] : null;
  let lo = 0, hi = 1;
  if (state) { lo = Math.min(...state); hi = Math.max(...state); if (hi - lo < 1e-12) hi = lo + 1e-12; }
  const title = kind === "spatial" ? `Spatial branch: ${lay.spatial_name}` : `Frequency branch: ${lay.freq_name}`;
  let h = `<div class="sa-panel"><h4>${esc(title)}</h4><svg id="sa-grid-${kind}" width="${G}" height="${G}" viewBox="0 0 ${G} ${G}">`;
  if (kind === "spatial" && D.image) h += `<image href="${D.image.src}" width="${G}" height="${G}" preserveAspectRatio="none" style="image-rendering:pixelated" opacity=".35"/>`;
  else h += `<rect width="${G}" height="${G}" fill="#f8f9fa"/>`;
  h += `<g class="sa-cells">`;
  for (let t = 0; t < n; t++) h += `<rect x="${(t % side) * cs}" y="${Math.floor(t / side) * cs}" width="${cs}" height="${cs}" fill="transparent" stroke="#ced4da" stroke-width=".4"/>`;
  h += `</g>`;
  if (kind === "freq" && lay.freq_windows) {
    const w = G / D.windows;
    for (let k = 1; k < D.windows; k++) h += `<line x1="${k * w}" y1="0" x2="${k * w}" y2="${G}" stroke="#495057" stroke-width="1.5"/><line x1="0" y1="${k * w}" x2="${G}" y2="${k * w}" stroke="#495057" stroke-width="1.5"/>`;
  }
  h += `<polyline class="sa-path" fill="none" stroke="#d9480f" stroke-width="1.6" stroke-opacity=".8" points=""/>`;
  h += `<rect class="sa-cursor" width="${cs}" height="${cs}" fill="none" stroke="#ff6b00" stroke-width="3"/></svg>`;
  // |h| along the sequence, revealed as the scan goes
  h += `<svg id="sa-chart-${kind}" width="${G}" height="${CH + 16}" viewBox="0 0 ${G} ${CH + 16}">`;
  if (state) {
    const pts = state.map((v, p) => `${((p / (n - 1)) * G).toFixed(1)},${(CH - ((v - lo) / (hi - lo)) * (CH - 6) - 3).toFixed(1)}`).join(" ");
    h += `<defs><clipPath id="sa-clip-${kind}"><rect class="sa-clip" x="0" y="0" width="0" height="${CH}"/></clipPath></defs>`;
    h += `<polyline points="${pts}" fill="none" stroke="#ced4da" stroke-width="1"/>`;
    h += `<polyline points="${pts}" fill="none" stroke="#1c7ed6" stroke-width="1.8" clip-path="url(#sa-clip-${kind})"/>`;
    h += `<line class="sa-marker" x1="0" x2="0" y1="0" y2="${CH}" stroke="#ff6b00" stroke-width="1.5"/>`;
    h += `<text x="2" y="10" font-size="10">${fmt(hi)}</text><text x="2" y="${CH - 2}" font-size="10">${fmt(lo)}</text>`;
    h += `<text x="${G / 2}" y="${CH + 13}" font-size="10.5" text-anchor="middle">mean |h| vs. position in the sequence (0 → ${n - 1})</text>`;
  } else {
    h += `<text x="${G / 2}" y="${CH / 2}" font-size="11" text-anchor="middle">hidden state: generate (this layer traced) to see it</text>`;
  }
  h += `</svg><p class="sa-sub">${kind === "spatial" ? "Tokens light up as the branch reads them" : "Wavelet tokens (each 4×4 window holds one patch's 16 subbands) light up as they are read"}; colour: ${state ? "|h| after reading the token" : "order of reading"}. Line: the path so far.</p></div>`;
  return { html: h, state, lo, hi, order };
}

function showLayer(i) {
  layerIdx = i;
  const lay = D.layers[i], r = root();
  r.dataset.layer = String(lay.layer);
  r.querySelectorAll("#sa-strip button").forEach((b) => b.classList.toggle("sa-sel", +b.dataset.layerIndex === i));
  const same = D.layers.filter((l) => l.cycle === lay.cycle && l.layer !== lay.layer).map((l) => l.layer);
  r.querySelector("#sa-cycle").textContent = `Layer ${lay.layer} is position ${lay.cycle} of the 4-layer cycle` + (same.length ? `: layers ${same.join(", ")} scan the same way.` : ".") + (lay.attn_after ? " The shared attention block runs right after it." : "");
  const box = r.querySelector("#sa-panels");
  P = {};
  if (!lay.spatial) { box.innerHTML = `<div class="sa-note">Layer ${lay.layer} is an attention block: it has no scan order.</div>`; setFrame(0); return; }
  const parts = ["spatial", "freq"].map((k) => [k, panel(k, lay)]);
  box.innerHTML = parts.map(([, p]) => p.html).join("");
  const side = D.side, cs = G / side;
  for (const [k, p] of parts) {
    const svg = box.querySelector(`#sa-grid-${k}`);
    P[k] = {
      cells: [...svg.querySelectorAll(".sa-cells rect")],
      order: p.order, state: p.state, lo: p.lo, hi: p.hi,
      pts: p.order.map((t) => `${((t % side) + 0.5) * cs},${(Math.floor(t / side) + 0.5) * cs}`),
      path: svg.querySelector(".sa-path"), cursor: svg.querySelector(".sa-cursor"),
      clip: box.querySelector(`#sa-chart-${k} .sa-clip`), marker: box.querySelector(`#sa-chart-${k} .sa-marker`),
      shown: -1,
    };
  }
  setFrame(0);
}

function setFrame(f) {
  const t0 = performance.now();
  const n = L(), side = D.side, cs = G / side;
  frame = Math.max(0, Math.min(n - 1, f));
  const r = root();
  for (const k of Object.keys(P)) {
    const p = P[k];
    const from = Math.min(p.shown, frame), to = Math.max(p.shown, frame);
    for (let q = Math.max(0, from + 1); q <= to; q++) {
      const cell = p.cells[p.order[q]];
      if (q <= frame) cell.setAttribute("fill", p.state ? cmap((p.state[q] - p.lo) / (p.hi - p.lo)) : cmap(q / (n - 1)));
      else cell.setAttribute("fill", "transparent");
    }
    if (p.shown < 0) p.cells[p.order[0]].setAttribute("fill", p.state ? cmap((p.state[0] - p.lo) / (p.hi - p.lo)) : cmap(0));
    p.shown = frame;
    p.path.setAttribute("points", p.pts.slice(0, frame + 1).join(" "));
    const t = p.order[frame];
    p.cursor.setAttribute("x", (t % side) * cs);
    p.cursor.setAttribute("y", Math.floor(t / side) * cs);
    const x = (frame / (n - 1)) * G;
    if (p.clip) p.clip.setAttribute("width", x.toFixed(1));
    if (p.marker) { p.marker.setAttribute("x1", x.toFixed(1)); p.marker.setAttribute("x2", x.toFixed(1)); }
  }
  const scrub = r.querySelector("#sa-scrub");
  if (+scrub.value !== frame) scrub.value = String(frame);
  const lay = D.layers[layerIdx];
  let txt = `position ${frame} of ${n - 1}`;
  if (P.spatial) {
    const ts = P.spatial.order[frame], tf = P.freq.order[frame];
    txt += ` · spatial reads token (${Math.floor(ts / side)}, ${ts % side})` + (P.spatial.state ? ` |h| ${fmt(P.spatial.state[frame])}` : "");
    txt += ` · frequency reads (${Math.floor(tf / side)}, ${tf % side})` + (P.freq.state ? ` |h| ${fmt(P.freq.state[frame])}` : "");
  }
  r.querySelector("#sa-pos").textContent = txt;
  r.dataset.frame = String(frame);
  r.dataset.layer = String(lay.layer);
  r.dataset.ms = (performance.now() - t0).toFixed(3);
}

function tick(now) {
  if (!playing) return;
  const speed = +root().querySelector("#sa-speed").value;
  acc += ((now - last) / 1000) * speed;
  last = now;
  const steps = Math.floor(acc);
  if (steps > 0) {
    acc -= steps;
    let f = frame + steps;
    if (f > L() - 1) {
      if (root().querySelector("#sa-through").checked) {
        showLayer((layerIdx + 1) % D.layers.length);
        f = 0;
      } else { setFrame(L() - 1); stop(); return; }
    }
    setFrame(f);
  }
  raf = requestAnimationFrame(tick);
}
function play() {
  if (!D || D.kind !== "scan" || !P.spatial) return;
  if (frame >= L() - 1 && !root().querySelector("#sa-through").checked) setFrame(0);
  playing = true; acc = 0; last = performance.now();
  root().dataset.playing = "1";
  root().querySelector("#sa-play").textContent = "❚❚ Pause";
  raf = requestAnimationFrame(tick);
}
function stop() {
  playing = false;
  if (raf) cancelAnimationFrame(raf);
  raf = 0;
  const r = root();
  if (r && r.querySelector("#sa-play")) { r.dataset.playing = "0"; r.querySelector("#sa-play").textContent = "▶ Play"; }
}
render();
watch(["value"], render);
