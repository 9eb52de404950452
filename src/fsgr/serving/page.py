"""The single page `fsgr serve` answers at `/`: HTML with inline CSS and JS, nothing fetched from elsewhere."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fsgr - image captioning</title>
<style>
  :root { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d232a; background: #f5f6f8; }
  body { margin: 0 auto; max-width: 1040px; padding: 18px; }
  h1 { font-size: 20px; margin: 0 0 12px; }
  h1 span { font-weight: normal; color: #67707a; font-size: 14px; }
  #drop { border: 2px dashed #9aa4ae; border-radius: 10px; padding: 18px; text-align: center; background: #fff;
          cursor: pointer; }
  #drop.over { border-color: #2f6fdf; background: #eef4ff; }
  #controls { display: flex; flex-wrap: wrap; gap: 10px 18px; margin: 12px 0; align-items: end; }
  #controls label { display: flex; flex-direction: column; font-size: 12px; color: #4b545e; }
  #controls input[type=number] { width: 84px; padding: 4px; font-size: 14px; }
  button { padding: 6px 14px; font-size: 14px; border-radius: 6px; border: 1px solid #2f6fdf; background: #2f6fdf;
           color: #fff; cursor: pointer; }
  button:disabled { opacity: .5; cursor: default; }
  #result { display: flex; gap: 22px; flex-wrap: wrap; }
  #left { flex: 0 0 auto; }
  #right { flex: 1 1 300px; min-width: 280px; }
  canvas { border-radius: 8px; background: #dde1e6; display: block; }
  #caption { font-size: 22px; font-weight: 600; margin: 4px 0 10px; min-height: 28px; }
  #status { font-size: 13px; color: #67707a; min-height: 18px; margin: 6px 0; }
  #status.error { color: #b3261e; font-weight: 600; }
  ol#beams { padding-left: 22px; margin: 4px 0 12px; }
  ol#beams li { margin: 2px 0; }
  .score { color: #67707a; font-variant-numeric: tabular-nums; font-size: 13px; margin-left: 6px; }
  ul#concepts { list-style: none; padding: 0; margin: 4px 0; columns: 2; font-size: 13px; }
  ul#concepts li { margin: 2px 0; break-inside: avoid; }
  .sw { display: inline-block; width: 12px; height: 12px; border: 1px solid #333; margin-right: 6px;
        vertical-align: -1px; }
  h2 { font-size: 14px; margin: 12px 0 2px; color: #4b545e; text-transform: uppercase; letter-spacing: .04em; }
</style>
</head>
<body>
<h1>fsgr <span>FSGR image captioning: caption, beams and the patch-to-concept map</span></h1>
<div id="drop" tabindex="0">
  <b>Choose, drop or paste an image</b> (JPEG, PNG, ...)<br>
  <input id="file" type="file" accept="image/*">
</div>
<div id="controls">
  <label>beam <input id="beam" name="beam" type="number" min="1" max="20" step="1"></label>
  <label>max length <input id="max_len" name="max_len" type="number" min="1" step="1"></label>
  <label>min length <input id="min_len" name="min_len" type="number" min="0" step="1"></label>
  <label>length penalty <input id="length_penalty" name="length_penalty" type="number" step="0.1"></label>
  <label>no-repeat n-gram <input id="no_repeat_ngram" name="no_repeat_ngram" type="number" min="0" step="1"></label>
  <label><span><input id="do_sample" type="checkbox"> sample</span></label>
  <label>temperature <input id="temperature" name="temperature" type="number" min="0.01" max="100" step="0.1"></label>
  <label>top-k <input id="top_k" name="top_k" type="number" min="0" step="1"></label>
  <label>top-p <input id="top_p" name="top_p" type="number" min="0" max="1" step="0.05"></label>
  <label>captions <input id="num_return_sequences" name="num_return_sequences" type="number" min="1" max="100"
    step="1"></label>
  <label>seed <input id="seed" name="seed" type="number" min="0" step="1"></label>
  <label><span><input id="showmap" type="checkbox" checked> concept map</span></label>
  <button id="again" disabled>Caption again</button>
</div>
<div id="status">Loading the model settings ...</div>
<div id="result">
  <div id="left"><canvas id="view" width="448" height="448"></canvas></div>
  <div id="right">
    <div id="caption"></div>
    <h2 id="beams_title">Beams</h2><ol id="beams"></ol>
    <h2>Concepts</h2><ul id="concepts"></ul>
  </div>
</div>
<script>
"use strict";
const CONTROLS = ["beam", "max_len", "min_len", "length_penalty", "no_repeat_ngram", "temperature", "top_k", "top_p",
                  "num_return_sequences", "seed"];
const SEARCH_ONLY = ["beam", "length_penalty"], SAMPLING_ONLY = ["temperature", "top_k", "top_p", "seed"];
const $ = (id) => document.getElementById(id);
let current = null, image = null, answer = null;

function palette(i) {                     // golden-ratio hues, as fsgr explain
  const h = (i * 0.61803398875) % 1, s = 0.75, v = 0.95, k = Math.floor(h * 6), f = h * 6 - k;
  const p = v * (1 - s), q = v * (1 - f * s), t = v * (1 - (1 - f) * s);
  const rgb = [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]][k % 6];
  return rgb.map((x) => Math.round(255 * x));
}

function status(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function draw() {
  const canvas = $("view"), ctx = canvas.getContext("2d");
  if (!image) return;
  const width = Math.min(448, image.naturalWidth * 4), scale = width / image.naturalWidth;
  canvas.width = Math.round(width);
  canvas.height = Math.round(image.naturalHeight * scale);
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  if (!answer || !$("showmap").checked) return;
  const grid = answer.grid, gh = grid.length, gw = grid[0].length;
  const colour = {};
  answer.concepts.forEach((c, rank) => { colour[c.id] = c.background ? null : palette(rank); });
  const small = document.createElement("canvas");     // one pixel per patch, upscaled smoothly
  small.width = gw; small.height = gh;
  const sctx = small.getContext("2d"), px = sctx.createImageData(gw, gh);
  for (let r = 0; r < gh; r++) for (let c = 0; c < gw; c++) {
    const col = colour[grid[r][c]], o = 4 * (r * gw + c);
    if (col) { px.data[o] = col[0]; px.data[o + 1] = col[1]; px.data[o + 2] = col[2]; px.data[o + 3] = 130; }
  }
  sctx.putImageData(px, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
  ctx.font = "bold 13px system-ui, sans-serif";       // each object concept's name at its patches' centre
  for (const c of answer.concepts) {
    if (c.background) continue;
    let sr = 0, sc = 0, n = 0;
    for (let r = 0; r < gh; r++) for (let k = 0; k < gw; k++) if (grid[r][k] === c.id) { sr += r; sc += k; n++; }
    if (!n || c.fraction < 0.02) continue;
    const x = (sc / n + 0.5) * canvas.width / gw, y = (sr / n + 0.5) * canvas.height / gh;
    const w = ctx.measureText(c.name).width;
    ctx.fillStyle = "rgba(0,0,0,.65)"; ctx.fillRect(x - w / 2 - 4, y - 9, w + 8, 18);
    ctx.fillStyle = "#fff"; ctx.fillText(c.name, x - w / 2, y + 5);
  }
}

function show(body) {
  answer = body;
  $("caption").textContent = body.caption;
  $("beams").replaceChildren(...body.beams.map((b) => {
    const li = document.createElement("li"), s = document.createElement("span");
    li.textContent = b.caption; s.className = "score"; s.textContent = b.logprob.toFixed(3);
    li.appendChild(s); return li;
  }));
  $("concepts").replaceChildren(...body.concepts.map((c, rank) => {
    const li = document.createElement("li"), sw = document.createElement("span");
    sw.className = "sw";
    sw.style.background = c.background ? "transparent" : "rgb(" + palette(rank).join(",") + ")";
    li.appendChild(sw);
    li.appendChild(document.createTextNode(c.name + " " + Math.round(100 * c.fraction) + "%"));
    return li;
  }));
  $("beams_title").textContent = body.decoding.do_sample ? "Samples" : "Beams";
  draw();
  const how = body.decoding.do_sample ? "sampled" : "beam " + body.decoding.beam_size;
  status("captioned in " + body.seconds.toFixed(3) + " s (" + how + ", " + body.precision + ")");
}

function sampling() {                      // sampling has no beam; the sampling fields need it
  const on = $("do_sample").checked;
  for (const k of SEARCH_ONLY) $(k).disabled = on;
  for (const k of SAMPLING_ONLY) $(k).disabled = !on;
}

async function send() {
  if (!current) return;
  const form = new FormData();
  form.append("image", current, current.name || "pasted.png");
  for (const k of CONTROLS) if (!$(k).disabled && $(k).value !== "") form.append(k, $(k).value);
  if ($("do_sample").checked) form.append("do_sample", "true");
  status("captioning ...");
  $("again").disabled = true;
  try {
    const response = await fetch("/api/caption", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) { answer = null; $("caption").textContent = ""; draw(); status(body.error, true); }
    else show(body);
  } catch (err) { status("request failed: " + err, true); }
  $("again").disabled = false;
}

function take(file) {
  if (!file) return;
  current = file; answer = null;
  const url = URL.createObjectURL(file), img = new Image();
  img.onload = () => { image = img; draw(); };
  img.onerror = () => { image = null; };
  img.src = url;
  $("caption").textContent = ""; $("beams").replaceChildren(); $("concepts").replaceChildren();
  send();
}

$("file").addEventListener("change", (e) => take(e.target.files[0]));
$("drop").addEventListener("click", (e) => { if (e.target.id !== "file") $("file").click(); });
$("drop").addEventListener("dragover", (e) => { e.preventDefault(); $("drop").classList.add("over"); });
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (e) => {
  e.preventDefault(); $("drop").classList.remove("over"); take(e.dataTransfer.files[0]);
});
document.addEventListener("paste", (e) => {
  const item = [...e.clipboardData.items].find((i) => i.type.startsWith("image/"));
  if (item) take(item.getAsFile());
});
$("again").addEventListener("click", send);
$("showmap").addEventListener("change", draw);
$("do_sample").addEventListener("change", sampling);
fetch("/healthz").then((r) => r.json()).then((h) => {
  $("beam").value = h.decoding.beam_size; $("max_len").value = h.decoding.max_len;
  $("min_len").value = h.decoding.min_len; $("length_penalty").value = h.decoding.length_penalty;
  $("no_repeat_ngram").value = h.decoding.no_repeat_ngram; $("do_sample").checked = h.decoding.do_sample;
  $("temperature").value = h.decoding.temperature; $("top_k").value = h.decoding.top_k;
  $("top_p").value = h.decoding.top_p; $("num_return_sequences").value = h.decoding.num_return_sequences;
  $("seed").value = h.decoding.seed === null ? "" : h.decoding.seed;
  sampling();
  status("ready: choose, drop or paste an image (" + h.device + ", " + h.precision + ", " + h.image_size +
         " px input)");
}).catch((err) => status("cannot reach the server: " + err, true));
</script>
</body>
</html>
"""
