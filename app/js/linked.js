// Linked views (gr.HTML js_on_load body: `element`, `props`, `watch` are gradio's).
// props.value is the JSON of app/views/linked.py. Everything below runs in the browser:
// pointing at a token or a subband moves a few highlights, no request to the server.
const NS = "http://www.w3.org/2000/svg";
function scaler(values, log) {
  const vs = values.filter((v) => Number.isFinite(v) && (!log || v > 0)).map((v) => (log ? Math.log10(v) : v));
  let lo = Math.min(...vs), hi = Math.max(...vs);
  if (!vs.length) { lo = 0; hi = 1; }
  if (hi - lo < 1e-12) hi = lo + 1e-12;
  const f = (v) => ((log ? Math.log10(Math.max(v, 1e-30)) : v) - lo) / (hi - lo);
  f.lo = log ? 10 ** lo : lo; f.hi = log ? 10 ** hi : hi;
  return f;
}
const fmt = (v) => (v === undefined || v === null || !Number.isFinite(v) ? "–" : Math.abs(v) >= 100 || (Math.abs(v) < 0.01 && v !== 0) ? v.toExponential(2) : v.toPrecision(3));
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
function colorbar(id, f, label, w) {
  const stops = VIRIDIS.map((c, i) => `<stop offset="${i / (VIRIDIS.length - 1)}" stop-color="rgb(${c})"/>`).join("");
  return `<svg class="dl-cbar" width="${w}" height="30" viewBox="0 0 ${w} 30"><defs><linearGradient id="${id}">${stops}</linearGradient></defs>` +
    `<rect x="0" y="2" width="${w}" height="9" fill="url(#${id})"/>` +
    `<text x="0" y="24" font-size="10">${fmt(f.lo)}</text><text x="${w}" y="24" font-size="10" text-anchor="end">${fmt(f.hi)}</text>` +
    `<text x="${w / 2}" y="24" font-size="10" text-anchor="middle">${esc(label)}</text></svg>`;
}
function gridCells(side, cs, color, attrs) {
  let out = "";
  for (let i = 0; i < side * side; i++) {
    const r = Math.floor(i / side), c = i % side;
    out += `<rect x="${c * cs}" y="${r * cs}" width="${cs}" height="${cs}" fill="${color(i)}" ${attrs(i)}/>`;
  }
  return out;
}
const cursor = (cls, size) => `<rect class="${cls}" x="-99" y="-99" width="${size}" height="${size}" fill="none"/>`;

if (!document.getElementById("dl-style")) {
  const st = document.createElement("style");
  st.id = "dl-style";
  st.textContent = `
.dl-root{font:13px system-ui,sans-serif;color:#212529}
.dl-root .dl-row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start;margin-bottom:10px}
.dl-root .dl-panel{background:#fff;border:1px solid #dee2e6;border-radius:10px;padding:8px}
.dl-root .dl-panel h4{margin:0 0 4px 0;font-size:13px;font-weight:600}
.dl-root .dl-sub{font-size:11.5px;color:#495057;max-width:290px;margin:2px 0 0 0}
.dl-root svg text{fill:#212529;font-family:system-ui,sans-serif}
.dl-root [data-tok],.dl-root [data-pos],.dl-root [data-band]{cursor:crosshair}
.dl-root .dl-cur{stroke:#ff6b00;stroke-width:3}
.dl-root .dl-patch{stroke:#fff;stroke-width:2;stroke-dasharray:4 3}
.dl-root .dl-win{stroke:#e03131;stroke-width:1.5;stroke-opacity:.9}
.dl-root .dl-tile-sel{stroke:#ff6b00;stroke-width:3}
.dl-root .dl-readout{width:380px;height:372px;overflow:auto;box-sizing:border-box;font-size:12.5px;line-height:1.45}
.dl-root .dl-readout table{border-collapse:collapse;margin-top:4px}
.dl-root .dl-readout td,.dl-root .dl-readout th{border:1px solid #dee2e6;padding:1px 5px;text-align:right;font-variant-numeric:tabular-nums}
.dl-root .dl-readout th{background:#f1f3f5;font-weight:600}
.dl-root .dl-empty{padding:24px;color:#495057;font-size:14px}
.dl-root .dl-cbar{display:block;margin-top:2px}
`;
  document.head.appendChild(st);
}

let D = null; // the current payload
let perm = {}; // scan order per branch: perm[kind][pos] = token
let scale = {};
let lastWin = [];

function render() {
  let data;
  try { data = JSON.parse(props.value || "{}"); } catch (e) { data = { kind: "empty", message: String(e) }; }
  D = data;
  element.innerHTML = "";
  const root = document.createElement("div");
  root.className = "dl-root";
  element.appendChild(root);
  if (data.kind !== "linked") {
    root.innerHTML = `<div class="dl-empty">${esc(data.message || "Press Generate: the linked views show the last finished run.")}</div>`;
    return;
  }
  const side = data.side, L = side * side;
  perm = {};
  for (const k of ["spatial", "freq"]) {
    const pos = data[k + "_pos"];
    if (pos) { perm[k] = new Array(L); pos.forEach((p, t) => { perm[k][p] = t; }); }
  }
  // ---- image with the token grid ----
  const IM = 288, cs = IM / side;
  const im = data.image;
  let h = `<div class="dl-row"><div class="dl-panel"><h4>Image ${esc(im.seed !== undefined ? "(seed " + im.seed + ")" : "")}: point at a token</h4>`;
  h += `<svg id="dl-image" width="${IM}" height="${IM}" viewBox="0 0 ${IM} ${IM}">`;
  h += `<image href="${im.src}" x="0" y="0" width="${IM}" height="${IM}" preserveAspectRatio="none" style="image-rendering:pixelated"/>`;
  h += `<g id="dl-bandmap"></g>`;
  h += gridCells(side, cs, () => "transparent", (i) => `data-tok="${i}" stroke="rgba(255,255,255,.25)" stroke-width=".5"`);
  h += `<rect class="dl-patch" x="-99" y="-99" width="${cs * data.patch_size}" height="${cs * data.patch_size}" fill="none"/>`;
  h += cursor("dl-cur", cs) + `</svg>`;
  h += `<p class="dl-sub">${side}×${side} tokens; one token = ${im.token_px}×${im.token_px} pixels of this ${im.px}×${im.px} ${im.space === "latent" ? "decoded image (2×2 latents)" : "image"}. Dashed: its 4×4 wavelet patch.</p></div>`;
  // ---- 16 packet subbands ----
  const B = data.bands;
  if (B && B.meanabs) {
    const q = side / data.patch_size, T = 62, gap = 10, W = 4 * T + 3 * gap, tc = T / q;
    scale.band = scaler(B.meanabs.flat(), true);
    h += `<div class="dl-panel"><h4>16 wavelet-packet subbands (frequency-branch input)</h4><svg id="dl-bands" width="${W}" height="${W + 4 * 12}" viewBox="0 0 ${W} ${W + 48}">`;
    for (let k = 0; k < 16; k++) {
      const x0 = (k % 4) * (T + gap), y0 = Math.floor(k / 4) * (T + gap + 12) + 12;
      h += `<text x="${x0}" y="${y0 - 2}" font-size="10">${B.names[k]}</text><g data-band="${k}">`;
      for (let j = 0; j < q * q; j++) {
        const v = B.meanabs[k][j];
        h += `<rect data-band="${k}" data-patch="${j}" x="${x0 + (j % q) * tc}" y="${y0 + Math.floor(j / q) * tc}" width="${tc}" height="${tc}" fill="${cmap(scale.band(v))}"/>`;
      }
      h += `</g><rect class="dl-tile" id="dl-tile-${k}" x="${x0}" y="${y0}" width="${T}" height="${T}" fill="none" stroke="#868e96" stroke-width=".5"/>`;
      h += `<rect class="dl-cur dl-bandcur" x="-99" y="-99" width="${tc}" height="${tc}" fill="none" data-k="${k}"/>`;
    }
    h += `</svg>` + colorbar("dl-cb-band", scale.band, "mean |coefficient| over channels (log)", W);
    h += `<p class="dl-sub">Level-1 band . level-2 band (LL: low-pass, LH: horizontal edges, HL: vertical, HH: diagonal). Each subband is a ${q}×${q} map: one coefficient per wavelet patch. Point at a subband to see where it is strong.</p></div>`;
  }
  h += `<div class="dl-panel dl-readout" id="dl-readout">Point at a token of the image, a cell of a scan sequence or a subband.</div></div>`;
  // ---- scan sequences ----
  h += `<div class="dl-row">`;
  const SQ = 14;
  for (const k of ["spatial", "freq"]) {
    if (!perm[k]) continue;
    const st = data.state[k];
    const normName = k === "spatial" ? "spatial_out" : "freq_out";
    const byPos = st ? st : perm[k].map((t) => (data.norms[normName] || [])[t]);
    scale[k] = scaler(byPos, false);
    const title = k === "spatial" ? `Spatial branch reads the tokens: ${data.spatial_name}` : `Frequency branch reads the wavelet tokens: ${data.freq_name}`;
    h += `<div class="dl-panel"><h4>${esc(title)}</h4><svg id="dl-seq-${k}" width="${side * SQ}" height="${side * SQ}" viewBox="0 0 ${side * SQ} ${side * SQ}">`;
    for (let p = 0; p < L; p++) {
      h += `<rect data-seq="${k}" data-pos="${p}" x="${(p % side) * SQ}" y="${Math.floor(p / side) * SQ}" width="${SQ}" height="${SQ}" fill="${cmap(scale[k](byPos[p]))}" stroke="#fff" stroke-width=".4"/>`;
    }
    h += cursor("dl-cur", SQ) + `</svg>`;
    h += colorbar(`dl-cb-${k}`, scale[k], st ? "mean |h| of the scan state" : "feature norm", side * SQ);
    h += `<p class="dl-sub">The ${L} positions of the sequence, read left to right, top to bottom (${side} per row); colour: ${st ? "hidden-state magnitude after reading that token" : "norm of the branch output"}.${k === "freq" ? " Red: the 16 wavelet tokens of the pointed token's patch." : ""}</p></div>`;
  }
  // ---- feature norms per branch ----
  const NM = 132, nc = NM / side;
  for (const [name, vals] of Object.entries(data.norms)) {
    scale[name] = scaler(vals, false);
    h += `<div class="dl-panel"><h4>‖${esc(data.norm_titles[name])}‖</h4><svg class="dl-norm" id="dl-norm-${name}" width="${NM}" height="${NM}" viewBox="0 0 ${NM} ${NM}">`;
    h += gridCells(side, nc, (i) => cmap(scale[name](vals[i])), (i) => `data-tok="${i}"`);
    h += cursor("dl-cur", nc) + `</svg>` + colorbar(`dl-cb-${name}`, scale[name], "L2 norm", NM) + `</div>`;
  }
  h += `</div>`;
  h += `<p class="dl-sub" style="max-width:none">Step ${data.step} (t = ${data.t}), block ${data.block} (position ${data.cycle} of the 4-layer cycle). Everything here is computed in your browser from the traced run: pointing needs no server.</p>`;
  root.innerHTML = h;
  root.dataset.token = "";
  root.dataset.block = String(data.block);
  root.dataset.side = String(side);
}

function place(svgId, cls, idx, cols, size, extra) {
  const el = element.querySelector(`#${svgId} .${cls}`);
  if (!el) return;
  el.setAttribute("x", (idx % cols) * size);
  el.setAttribute("y", Math.floor(idx / cols) * size);
  if (extra) extra(el);
}

function highlightToken(t) {
  const t0 = performance.now();
  const data = D, side = data.side, root = element.querySelector(".dl-root");
  const r = Math.floor(t / side), c = t % side;
  const cs = 288 / side;
  place("dl-image", "dl-cur", t, side, cs);
  const pr = Math.floor(r / data.patch_size) * data.patch_size, pc = Math.floor(c / data.patch_size) * data.patch_size;
  const patchEl = element.querySelector("#dl-image .dl-patch");
  patchEl.setAttribute("x", pc * cs); patchEl.setAttribute("y", pr * cs);
  for (const name of Object.keys(data.norms)) place(`dl-norm-${name}`, "dl-cur", t, side, 132 / side);
  const sp = data.spatial_pos ? data.spatial_pos[t] : null, fp = data.freq_pos ? data.freq_pos[t] : null;
  if (sp !== null) place("dl-seq-spatial", "dl-cur", sp, side, 14);
  for (const el of lastWin) el.classList.remove("dl-win");
  lastWin = [];
  let patchPos = [];
  if (fp !== null) {
    place("dl-seq-freq", "dl-cur", fp, side, 14);
    const patch = data.patch[t];
    for (let u = 0; u < side * side; u++) if (data.patch[u] === patch) patchPos.push(data.freq_pos[u]);
    patchPos.sort((a, b) => a - b);
    for (const p of patchPos) {
      const el = element.querySelector(`#dl-seq-freq [data-pos="${p}"]`);
      if (el) { el.classList.add("dl-win"); lastWin.push(el); }
    }
  }
  const B = data.bands, q = side / data.patch_size;
  const pj = data.patch[t], pp = data.patch_pos[t];
  if (B && B.meanabs) {
    const T = 62, gap = 10, tc = T / q;
    element.querySelectorAll("#dl-bands .dl-bandcur").forEach((el) => {
      const k = +el.dataset.k;
      el.setAttribute("x", (k % 4) * (T + gap) + (pj % q) * tc);
      el.setAttribute("y", Math.floor(k / 4) * (T + gap + 12) + 12 + Math.floor(pj / q) * tc);
    });
    element.querySelectorAll("#dl-bands .dl-tile-sel").forEach((el) => el.classList.remove("dl-tile-sel"));
    element.querySelector("#dl-bandmap").innerHTML = "";
  }
  // ---- readout ----
  let o = `<b>Token (row ${r}, column ${c})</b>, index ${t} · pixels x ${c * data.image.token_px}–${(c + 1) * data.image.token_px - 1}, y ${r * data.image.token_px}–${(r + 1) * data.image.token_px - 1}<br>`;
  if (sp !== null) o += `Spatial scan: position <b data-k="spos">${sp}</b> of ${side * side}` + (data.state.spatial ? `, |h| = ${fmt(data.state.spatial[sp])}` : "") + `<br>`;
  if (fp !== null) {
    o += `Frequency scan: its wavelet patch is read at positions <b>${patchPos[0]}–${patchPos[patchPos.length - 1]}</b>; the wavelet token in its place at <b data-k="fpos">${fp}</b>` + (data.state.freq ? `, |h| = ${fmt(data.state.freq[fp])}` : "") + `<br>`;
    o += `Wavelet patch ${pj} (patch row ${Math.floor(pj / q)}, column ${pj % q}), place ${pp} in it.<br>`;
  }
  o += `<table><tr><th>feature norm</th>` + Object.keys(data.norms).map((n) => `<th>${esc(data.norm_titles[n])}</th>`).join("") + `</tr><tr><td>‖·‖</td>` + Object.values(data.norms).map((v) => `<td>${fmt(v[t])}</td>`).join("") + `</tr></table>`;
  if (B && B.meanabs) {
    o += `<div style="margin-top:4px">The 16 packet coefficients it contributes to (weight of this token · mean |coefficient|):</div><table>`;
    for (let row = 0; row < 4; row++) {
      o += "<tr>";
      for (let col = 0; col < 4; col++) {
        const k = row * 4 + col, w = B.weights[pp][k];
        o += `<td title="${B.names[k]}">${B.names[k]} ${w >= 0 ? "+" : "−"}1/${Math.round(1 / Math.abs(w))} · ${fmt(B.meanabs[k][pj])}</td>`;
      }
      o += "</tr>";
    }
    o += `</table>`;
  }
  element.querySelector("#dl-readout").innerHTML = o;
  root.dataset.token = String(t);
  root.dataset.spos = sp === null ? "" : String(sp);
  root.dataset.fpos = fp === null ? "" : String(fp);
  root.dataset.band = "";
  root.dataset.ms = (performance.now() - t0).toFixed(3);
}

function highlightBand(k, patch) {
  const t0 = performance.now();
  const data = D, side = data.side, B = data.bands, root = element.querySelector(".dl-root");
  const q = side / data.patch_size, cs = 288 / side, pcs = cs * data.patch_size;
  element.querySelectorAll("#dl-bands .dl-tile-sel").forEach((el) => el.classList.remove("dl-tile-sel"));
  element.querySelector(`#dl-tile-${k}`).classList.add("dl-tile-sel");
  const vals = B.meanabs[k], f = scaler(vals, false);
  let g = "";
  for (let j = 0; j < q * q; j++) {
    g += `<rect x="${(j % q) * pcs}" y="${Math.floor(j / q) * pcs}" width="${pcs}" height="${pcs}" fill="${cmap(f(vals[j]))}" fill-opacity=".55" pointer-events="none"/>`;
  }
  element.querySelector("#dl-bandmap").innerHTML = g;
  const share = B.feature_share[k];
  const uniform = share.every((s) => Math.abs(s - share[0]) < 1e-6);
  let o = `<b>Subband ${B.names[k]}</b> (number ${k} of 16): its ${q}×${q} coefficients tint the image, one per wavelet patch (this subband's own scale, ${fmt(f.lo)}–${fmt(f.hi)}).<br>`;
  if (patch !== undefined && patch !== null) o += `Patch ${patch}: mean |coefficient| <b>${fmt(vals[patch])}</b>.<br>`;
  o += `Its ${B.channels} channels are stored in the wavelet tokens of every patch: ` + (uniform ? `${Math.round(share[0] * B.channels)} of the ${B.channels} features of each of the 16 tokens.` : `share of features per place in the patch: ${share.map((s) => fmt(s)).join(", ")}.`);
  element.querySelector("#dl-readout").innerHTML = o;
  root.dataset.band = String(k);
  root.dataset.ms = (performance.now() - t0).toFixed(3);
}

function onPoint(ev) {
  if (!D || D.kind !== "linked") return;
  const el = ev.target.closest ? ev.target.closest("[data-tok],[data-pos],[data-band]") : null;
  if (!el || !element.contains(el)) return;
  if (el.dataset.tok !== undefined) highlightToken(+el.dataset.tok);
  else if (el.dataset.pos !== undefined) highlightToken(perm[el.dataset.seq][+el.dataset.pos]);
  else highlightBand(+el.dataset.band, el.dataset.patch !== undefined ? +el.dataset.patch : null);
}
element.addEventListener("mouseover", onPoint);
element.addEventListener("click", onPoint);
render();
watch(["value"], render);
