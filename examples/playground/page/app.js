// The convnet playground page: drawing, MNIST-style framing, and showing what LeNet-5 computed.
// Plain JavaScript, no libraries: the page must work offline.
"use strict";

const SIDE = 28; // MNIST's side
const BOX = 20; // MNIST digits were scaled to fit 20x20, then centred by mass in 28x28
const BRUSH = 20; // pen width on the 280x280 pad

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const ctx = pad.getContext("2d", { willReadFrequently: true });

// ---------------------------------------------------------------------------------------------
// Tabs

for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
    for (const p of document.querySelectorAll(".panel")) p.hidden = p.id !== tab.dataset.tab;
    if (tab.dataset.tab === "zoo") loadZooList();
  });
}

// ---------------------------------------------------------------------------------------------
// Drawing with pointer events (mouse, pen or finger)

function clearPad() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
}
clearPad();

let drawing = false;
let last = null;

function position(e) {
  const r = pad.getBoundingClientRect();
  return { x: ((e.clientX - r.left) * pad.width) / r.width, y: ((e.clientY - r.top) * pad.height) / r.height };
}

function stroke(from, to) {
  ctx.strokeStyle = "#fff";
  ctx.fillStyle = "#fff";
  ctx.lineWidth = BRUSH;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(from.x, from.y);
  ctx.lineTo(to.x, to.y);
  ctx.stroke();
}

pad.addEventListener("pointerdown", (e) => {
  e.preventDefault();
  pad.setPointerCapture(e.pointerId);
  drawing = true;
  last = position(e);
  stroke(last, last);
  schedule();
});
pad.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  e.preventDefault();
  const p = position(e);
  stroke(last, p);
  last = p;
  schedule();
});
for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
  pad.addEventListener(type, () => {
    if (drawing) schedule();
    drawing = false;
  });
}
$("clear").addEventListener("click", () => {
  clearPad();
  showEmpty();
});

// ---------------------------------------------------------------------------------------------
// Framing the drawing as MNIST did: crop to the ink, scale the longer side to 20 pixels
// (averaging the area each pixel covers), centre the centre of mass in 28x28.

function inkOf(canvas) {
  const { width: w, height: h } = canvas;
  const data = canvas.getContext("2d").getImageData(0, 0, w, h).data;
  const ink = new Float32Array(w * h);
  for (let i = 0; i < w * h; i++) ink[i] = data[4 * i] / 255;
  return { ink, w, h };
}

// 1-D area weights: for output cell o of n_out, the source cells it covers and how much.
function areaWeights(nIn, nOut) {
  const scale = nIn / nOut;
  const taps = [];
  for (let o = 0; o < nOut; o++) {
    const lo = o * scale, hi = (o + 1) * scale;
    const t = [];
    for (let i = Math.floor(lo); i < Math.min(Math.ceil(hi), nIn); i++) {
      const overlap = Math.min(hi, i + 1) - Math.max(lo, i);
      if (overlap > 0) t.push([i, overlap / scale]);
    }
    taps.push(t);
  }
  return taps;
}

function resizeArea(src, side, outSide) {
  const taps = areaWeights(side, outSide);
  const tmp = new Float32Array(side * outSide); // rows of src, columns resized
  for (let r = 0; r < side; r++)
    for (let c = 0; c < outSide; c++) {
      let s = 0;
      for (const [i, wt] of taps[c]) s += src[r * side + i] * wt;
      tmp[r * outSide + c] = s;
    }
  const out = new Float32Array(outSide * outSide);
  for (let r = 0; r < outSide; r++)
    for (const [i, wt] of taps[r])
      for (let c = 0; c < outSide; c++) out[r * outSide + c] += tmp[i * outSide + c] * wt;
  return out;
}

// The 28x28 input, or null when nothing is drawn.
function frame() {
  const { ink, w, h } = inkOf(pad);
  let r0 = h, r1 = -1, c0 = w, c1 = -1;
  for (let r = 0; r < h; r++)
    for (let c = 0; c < w; c++)
      if (ink[r * w + c] > 0.1) {
        r0 = Math.min(r0, r); r1 = Math.max(r1, r);
        c0 = Math.min(c0, c); c1 = Math.max(c1, c);
      }
  if (r1 < 0) return null;
  const bh = r1 - r0 + 1, bw = c1 - c0 + 1, side = Math.max(bh, bw);
  const top = Math.floor((side - bh) / 2), left = Math.floor((side - bw) / 2);
  const square = new Float32Array(side * side);
  for (let r = 0; r < bh; r++)
    for (let c = 0; c < bw; c++) square[(top + r) * side + left + c] = ink[(r0 + r) * w + c0 + c];
  const digit = resizeArea(square, side, BOX);
  let mass = 0, my = 0, mx = 0;
  for (let i = 0; i < BOX * BOX; i++) {
    const v = digit[i];
    mass += v;
    my += v * (Math.floor(i / BOX) + 0.5);
    mx += v * ((i % BOX) + 0.5);
  }
  const offset = (m) => {
    const centre = mass > 0 ? m / mass : BOX / 2;
    return Math.min(Math.max(Math.round(SIDE / 2 - centre), 0), SIDE - BOX);
  };
  const oy = offset(my), ox = offset(mx);
  const out = new Array(SIDE * SIDE).fill(0);
  for (let r = 0; r < BOX; r++)
    for (let c = 0; c < BOX; c++)
      out[(oy + r) * SIDE + ox + c] = Math.min(1, Math.max(0, Math.round(digit[r * BOX + c] * 1e4) / 1e4));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Asking the server, at most one request at a time, shortly after the last stroke

let timer = null;
let busy = false;
let again = false;
let ready = false;

let waitingSince = null;

// Debounced: 120 ms after the last stroke event, and at least every 300 ms while drawing.
function schedule() {
  clearTimeout(timer);
  if (waitingSince === null) waitingSince = Date.now();
  if (Date.now() - waitingSince > 300) predict();
  else timer = setTimeout(predict, 120);
}

async function predict() {
  clearTimeout(timer);
  waitingSince = null;
  if (!ready) return;
  if (busy) {
    again = true;
    return;
  }
  const pixels = frame();
  if (!pixels) {
    showEmpty();
    return;
  }
  busy = true;
  $("prediction").dataset.state = "pending";
  try {
    const res = await fetch("/api/predict", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ pixels }),
    });
    const body = await res.json();
    if (!res.ok) throw new Error(body.error || res.statusText);
    render(body);
  } catch (err) {
    $("prediction").dataset.state = "error";
    setStatus("Prediction failed: " + err.message, true);
  } finally {
    busy = false;
    if (again) {
      again = false;
      predict();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Showing the answer

function showEmpty() {
  $("prediction").textContent = "–";
  $("prediction").dataset.state = "empty";
  $("confidence").textContent = "";
  bars(new Array(10).fill(0), -1);
  for (const id of ["input", "saliency"]) {
    const c = $(id).getContext("2d");
    c.fillStyle = "#000";
    c.fillRect(0, 0, SIDE, SIDE);
  }
  $("layers").replaceChildren();
}

function bars(probabilities, top) {
  const box = $("bars");
  if (box.children.length !== 10) {
    box.replaceChildren();
    for (let d = 0; d < 10; d++) {
      const row = document.createElement("div");
      row.className = "bar";
      row.innerHTML = `<span>${d}</span><div class="track"><div class="fill"></div></div><span class="pct"></span>`;
      box.appendChild(row);
    }
  }
  probabilities.forEach((p, d) => {
    const row = box.children[d];
    row.classList.toggle("top", d === top);
    row.querySelector(".fill").style.width = (100 * p).toFixed(1) + "%";
    row.querySelector(".pct").textContent = (100 * p).toFixed(1) + "%";
  });
}

// Grey image of `values` (h x w, scaled so `max` is white) on a canvas.
function drawGrey(canvas, values, offset, h, w, max) {
  canvas.width = w;
  canvas.height = h;
  const c = canvas.getContext("2d");
  const img = c.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const v = Math.round(255 * Math.min(1, Math.max(0, values[offset + i] / max)));
    img.data.set([v, v, v, 255], 4 * i);
  }
  c.putImageData(img, 0, 0);
}

// The "jet" colour map (blue, cyan, yellow, red) for a value in [0, 1].
function jet(v) {
  const ramp = (centre) => Math.min(1, Math.max(0, 1.5 - Math.abs(4 * v - centre)));
  return [ramp(3), ramp(2), ramp(1)].map((c) => Math.round(255 * c));
}

function drawSaliency(canvas, input, heat) {
  const c = canvas.getContext("2d");
  const img = c.createImageData(SIDE, SIDE);
  for (let i = 0; i < SIDE * SIDE; i++) {
    const [r, g, b] = jet(heat[i]);
    const a = 0.6, grey = 255 * input[i];
    img.data.set([a * r + (1 - a) * grey, a * g + (1 - a) * grey, a * b + (1 - a) * grey, 255], 4 * i);
  }
  c.putImageData(img, 0, 0);
}

function render(r) {
  const top = r.prediction;
  $("prediction").textContent = String(top);
  $("prediction").dataset.state = "done";
  $("confidence").textContent = (100 * r.probabilities[top]).toFixed(1) + "% sure";
  bars(r.probabilities, top);
  drawGrey($("input"), r.input, 0, SIDE, SIDE, 1);
  drawSaliency($("saliency"), r.input, r.saliency);

  const box = $("layers");
  box.replaceChildren();
  for (const layer of r.layers) {
    const [channels, h, w] = layer.shape;
    const div = document.createElement("div");
    div.className = "layer";
    const head = document.createElement("div");
    head.className = "layer-head";
    for (const [cls, text] of [
      ["name", layer.label],
      ["about", layer.about],
      ["shape", `output ${channels} x ${h} x ${w}  ${layer.course_shape}`],
      ["formula", `N = ${layer.input}:  ${layer.formula}`],
    ]) {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = text;
      head.appendChild(span);
    }
    div.appendChild(head);
    const maps = document.createElement("div");
    maps.className = "maps";
    const max = Math.max(1e-6, ...layer.maps);
    if (h * w === 1) {
      // 1x1 maps (CONV3): one cell per channel, 20 to a row.
      const canvas = document.createElement("canvas");
      canvas.className = "fmap";
      const cols = 20, rows = Math.ceil(channels / cols);
      const values = new Array(rows * cols).fill(0);
      layer.maps.forEach((v, i) => (values[i] = v));
      drawGrey(canvas, values, 0, rows, cols, max);
      canvas.style.width = cols * 14 + "px";
      canvas.style.height = rows * 14 + "px";
      canvas.title = `${channels} maps of 1x1`;
      maps.appendChild(canvas);
    } else {
      const size = Math.max(40, Math.min(84, 3 * w));
      for (let k = 0; k < channels; k++) {
        const canvas = document.createElement("canvas");
        canvas.className = "fmap";
        drawGrey(canvas, layer.maps, k * h * w, h, w, max);
        canvas.style.width = canvas.style.height = size + "px";
        canvas.title = `${layer.label} map ${k + 1}`;
        maps.appendChild(canvas);
      }
    }
    div.appendChild(maps);
    box.appendChild(div);
  }
}

showEmpty();

// ---------------------------------------------------------------------------------------------
// Model status (training progress on first start)

function setStatus(text, failed) {
  $("status").textContent = text;
  $("status").classList.toggle("failed", !!failed);
}

async function poll() {
  let s;
  try {
    s = await (await fetch("/api/status")).json();
  } catch (err) {
    setStatus("The playground server does not answer: " + err.message, true);
    setTimeout(poll, 2000);
    return;
  }
  const bar = $("training");
  if (s.state === "training") {
    bar.hidden = false;
    bar.max = s.steps;
    bar.value = s.step;
    setStatus(
      s.step > 0
        ? `Training LeNet-5 on MNIST (first start): step ${s.step} of ${s.steps}, ` +
          `loss ${s.loss.toFixed(4)}, accuracy ${(100 * s.accuracy).toFixed(2)}%, ${s.seconds.toFixed(0)} s — ${s.phase}`
        : `Training LeNet-5 on MNIST (first start): ${s.phase}…`
    );
    setTimeout(poll, 400);
  } else if (s.state === "ready") {
    bar.hidden = true;
    ready = true;
    const acc = s.test_accuracy == null ? "" : `, ${(100 * s.test_accuracy).toFixed(2)}% on the MNIST test set`;
    setStatus(`LeNet-5 ready (${s.source}${acc}). Draw a digit.`);
    document.body.dataset.ready = "true";
    schedule();
  } else {
    bar.hidden = true;
    setStatus("No model: " + s.error, true);
  }
}
poll();

// ---------------------------------------------------------------------------------------------
// The zoo tab

let zooLoaded = false;

async function loadZooList() {
  if (zooLoaded) return;
  zooLoaded = true;
  const { models } = await (await fetch("/api/zoo")).json();
  const select = $("model");
  for (const m of models) {
    const opt = document.createElement("option");
    opt.value = m.name;
    opt.textContent = m.name;
    select.appendChild(opt);
  }
  select.value = "lenet5_modern";
  select.addEventListener("change", () => showModel(select.value));
  showModel(select.value);
}

async function showModel(name) {
  $("about").textContent = "Building " + name + "…";
  $("summary").textContent = "";
  $("params").textContent = "–";
  const res = await fetch("/api/zoo/" + encodeURIComponent(name));
  const body = await res.json();
  if ($("model").value !== name) return; // another model was picked meanwhile
  if (!res.ok) {
    $("about").textContent = body.error || res.statusText;
    return;
  }
  $("about").textContent = `${body.about}. Input ${body.input.join(" x ")}, ${body.classes} classes.`;
  $("params").textContent = body.total_params_text;
  $("summary").textContent = body.summary;
}
