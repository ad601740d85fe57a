// The click-to-segment page: posts the image once, waits for its encoding, then runs one session
// of the native API per object (clicks, undo, redo, reset) and draws each object's mask (a 1-bit
// PNG at the image's resolution) in its colour, with zoom and pan over the image. Outlines and
// click markers are drawn on a canvas of the window's size, so they stay sharp at any zoom.
"use strict";

const $ = (id) => document.getElementById(id);
const imageCanvas = $("image");
const maskCanvas = $("masks");
const overlay = $("overlay");
const viewport = $("viewport");
const COLORS = ["#1e90ff", "#f97316", "#22c55e", "#e11d48", "#a855f7", "#eab308", "#14b8a6", "#f472b6"];
const MIN_ZOOM = 0.05;
const MAX_ZOOM = 64;
const DRAG_PX = 4;  // a press that moves further pans instead of clicking

// objects: [{ sessionId, color, result, tint (canvas of the coloured mask), pixels }]
const state = { imageId: null, width: 0, height: 0, name: "image", objects: [], active: -1,
                view: { scale: 1, x: 0, y: 0 }, busy: Promise.resolve() };
const activeObject = () => state.objects[state.active];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function setStatus(text, isError = false) {
  $("status-text").textContent = text;
  $("status").classList.toggle("error", isError);
}

// A server started with a token answers 401: ask for it once, keep it for this tab.
function authHeaders() {
  const token = sessionStorage.getItem("i2f-token");
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function call(method, path, body, retried = false) {
  const options = { method, headers: authHeaders() };
  if (body instanceof FormData) options.body = body;
  else if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  if (response.status === 401 && !retried) {
    const token = window.prompt("This server needs its token (I2F_SERVE_TOKEN):");
    if (token) {
      sessionStorage.setItem("i2f-token", token.trim());
      return call(method, path, body, true);
    }
  }
  const data = response.status === 204 ? null : await response.json();
  if (!response.ok) {
    const detail = data && data.detail;
    throw new Error(typeof detail === "string" ? detail : `HTTP ${response.status}: ${JSON.stringify(detail)}`);
  }
  return data;
}

// One request at a time, in the order asked; the page shows it is working meanwhile.
function enqueue(task, label) {
  state.busy = state.busy.then(async () => {
    document.body.dataset.state = "busy";
    if (label) setStatus(label);
    try {
      await task();
    } catch (error) {
      setStatus(error.message, true);
    } finally {
      document.body.dataset.state = "ready";
    }
  });
  return state.busy;
}

// ------------------------------------------------------------------ image and objects
async function openImage(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new Error(`${file.name || "the pasted data"}: not an image this browser can read`);
  }
  const form = new FormData();
  form.append("file", file, file.name || "pasted.png");
  setStatus("Uploading…");
  const image = await call("POST", "/api/images", form);
  const encodedIn = await waitForEncoding(image);
  for (const object of state.objects) call("DELETE", `/api/sessions/${object.sessionId}`).catch(() => {});
  Object.assign(state, { imageId: image.image_id, width: image.width, height: image.height, objects: [], active: -1,
                         name: (file.name || "pasted").replace(/\.[^.]*$/, "") });
  for (const canvas of [imageCanvas, maskCanvas]) {
    canvas.width = image.width;
    canvas.height = image.height;
  }
  imageCanvas.getContext("2d").drawImage(bitmap, 0, 0);
  $("stage").hidden = false;
  $("empty").hidden = true;
  fitView();
  await addObject();
  setStatus(`${image.width}×${image.height}, ` + (encodedIn === null ? "already encoded" : `encoded in ${encodedIn.toFixed(1)} s`) +
            ": click on the object.");
}

// The encoder runs in the background (seconds at 1024–2048): show it, with the time elapsed.
async function waitForEncoding(image) {
  if (image.encoded) return null;
  const start = performance.now();
  const elapsed = () => (performance.now() - start) / 1000;
  document.body.dataset.state = "encoding";
  try {
    for (;;) {
      setStatus(`Encoding… ${elapsed().toFixed(1)} s`);
      await sleep(250);
      if ((await call("GET", `/api/images/${image.image_id}`)).encoded) return elapsed();
    }
  } finally {
    document.body.dataset.state = "busy";
  }
}

async function addObject() {
  const session = await call("POST", "/api/sessions?mask=none&polygons=false", { image_id: state.imageId });
  state.objects.push({ sessionId: session.session_id, color: COLORS[state.objects.length % COLORS.length],
                       result: session, tint: null, pixels: 0 });
  state.active = state.objects.length - 1;
  showObjects();
  render();
  setStatus(`Object ${state.active + 1}: click on it.`);
}

function selectObject(index) {
  state.active = index;
  showObjects();
  render();
}

function showObjects() {
  const bar = $("objects");
  bar.replaceChildren(...state.objects.map((object, index) => {
    const button = document.createElement("button");
    button.dataset.index = String(index);
    button.setAttribute("aria-pressed", String(index === state.active));
    button.title = `object ${index + 1}`;
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = object.color;
    button.append(swatch, String(index + 1));
    button.addEventListener("click", () => selectObject(index));
    return button;
  }));
}

// A server answer for the active object: colour its mask once, then redraw.
async function show(result) {
  const object = activeObject();
  object.result = result;
  object.tint = null;
  object.pixels = 0;
  if (result.mask) Object.assign(object, await tint(result.mask.data, object.color));
  render();
  const t = result.timings;
  const name = state.objects.length > 1 ? `Object ${state.active + 1}: ` : "";
  if (result.clicks.length) {
    setStatus(`${name}${result.clicks.length} click(s), ${object.pixels} px · decoder ${t.decode_ms} ms` +
              (t.encode_wait_ms > 1 ? `, waited ${t.encode_wait_ms} ms for the encoder` : "") + `, total ${t.total_ms} ms`);
  } else {
    setStatus(name ? `${name}no clicks; click on it.` : "No clicks: click on the object.");
  }
}

async function tint(pngDataUri, color) {
  const mask = await loadImage(pngDataUri);
  const canvas = document.createElement("canvas");
  canvas.width = mask.width;
  canvas.height = mask.height;
  const context = canvas.getContext("2d");
  context.drawImage(mask, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height);
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(color.slice(i, i + 2), 16));
  const p = data.data;
  let pixels = 0;
  for (let i = 0; i < p.length; i += 4) {
    const on = p[i] > 127;
    pixels += on;
    p[i] = r; p[i + 1] = g; p[i + 2] = b; p[i + 3] = on ? 255 : 0;
  }
  context.putImageData(data, 0, 0);
  return { tint: canvas, pixels };
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("cannot read the mask returned by the server"));
    image.src = src;
  });
}

// ------------------------------------------------------------------ drawing
function render() {
  const masks = maskCanvas.getContext("2d");
  masks.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
  for (const object of state.objects) if (object.tint) masks.drawImage(object.tint, 0, 0);
  drawOverlay();
  const object = activeObject();
  const result = object ? object.result : { clicks: [], can_undo: false, can_redo: false };
  overlay.dataset.maskPixels = String(object ? object.pixels : 0);
  overlay.dataset.clicks = String(result.clicks.length);
  overlay.dataset.objects = String(state.objects.length);
  overlay.dataset.session = object ? object.sessionId : "";
  $("undo").disabled = !result.can_undo;
  $("redo").disabled = !result.can_redo;
  $("reset").disabled = !result.clicks.length;
  const anyMask = state.objects.some((o) => o.result.clicks.length);
  for (const id of ["export-png", "export-coco"]) $(id).disabled = !anyMask;
  $("new-object").disabled = $("fit").disabled = !state.imageId;
}

// Outlines and click markers in window pixels: constant widths and sharp edges at any zoom.
function drawOverlay() {
  const ratio = window.devicePixelRatio || 1;
  const box = viewport.getBoundingClientRect();
  const [width, height] = [Math.round(box.width * ratio), Math.round(box.height * ratio)];
  if (overlay.width !== width || overlay.height !== height) Object.assign(overlay, { width, height });
  const context = overlay.getContext("2d");
  context.setTransform(1, 0, 0, 1, 0, 0);
  context.clearRect(0, 0, overlay.width, overlay.height);
  const { scale, x, y } = state.view;
  context.setTransform(ratio * scale, 0, 0, ratio * scale, ratio * x, ratio * y);
  const px = 1 / scale;
  if (!$("hide").matches("[aria-pressed=true]")) {
    state.objects.forEach((object, index) => {
      context.lineWidth = (index === state.active ? 2 : 1) * px;
      context.strokeStyle = index === state.active ? "#ffd400" : object.color;
      for (const polygon of object.result.polygons || []) {
        context.beginPath();
        polygon.forEach(([x, y], i) => (i ? context.lineTo(x + 0.5, y + 0.5) : context.moveTo(x + 0.5, y + 0.5)));
        context.closePath();
        context.stroke();
      }
    });
  }
  const object = activeObject();
  for (const click of object ? object.result.clicks : []) {
    context.beginPath();
    context.arc(click.x + 0.5, click.y + 0.5, 5 * px, 0, 2 * Math.PI);
    context.fillStyle = click.positive ? "#21c55d" : "#ef4444";
    context.fill();
    context.lineWidth = 1.5 * px;
    context.strokeStyle = "#fff";
    context.stroke();
  }
}

function setOpacity() {
  maskCanvas.style.opacity = String($("opacity").value / 100);
}

function toggleHidden() {
  const hidden = !$("hide").matches("[aria-pressed=true]");
  $("hide").setAttribute("aria-pressed", String(hidden));
  $("hide").textContent = hidden ? "Show masks" : "Hide masks";
  maskCanvas.hidden = hidden;
  drawOverlay();
}

// ------------------------------------------------------------------ zoom and pan
function applyView() {
  const { scale, x, y } = state.view;
  $("stage").style.transform = `translate(${x}px, ${y}px) scale(${scale})`;
  $("stage").dataset.scale = String(scale);
  drawOverlay();
}

function fitView() {
  if (!state.width) return;
  const box = viewport.getBoundingClientRect();
  const scale = Math.min(box.width / state.width, box.height / state.height) * 0.98;
  state.view = { scale, x: (box.width - state.width * scale) / 2, y: (box.height - state.height * scale) / 2 };
  applyView();
}

// Zoom by `factor`, keeping the image point under (clientX, clientY) in place.
function zoomAt(factor, clientX, clientY) {
  const box = viewport.getBoundingClientRect();
  const { scale, x, y } = state.view;
  const next = Math.min(Math.max(scale * factor, MIN_ZOOM), MAX_ZOOM);
  const cx = clientX - box.left;
  const cy = clientY - box.top;
  state.view = { scale: next, x: cx - ((cx - x) * next) / scale, y: cy - ((cy - y) * next) / scale };
  applyView();
}

function zoomAtCentre(factor) {
  const box = viewport.getBoundingClientRect();
  zoomAt(factor, box.left + box.width / 2, box.top + box.height / 2);
}

// The image pixel under the pointer (clamped to the image: a click just outside lands on its edge).
function toImagePixel(event) {
  const box = imageCanvas.getBoundingClientRect();
  const x = Math.floor((event.clientX - box.left) * state.width / box.width);
  const y = Math.floor((event.clientY - box.top) * state.height / box.height);
  return { x: Math.min(Math.max(x, 0), state.width - 1), y: Math.min(Math.max(y, 0), state.height - 1) };
}

function click(event, positive) {
  const object = activeObject();
  if (!object) return;
  const point = toImagePixel(event);
  enqueue(async () => show(await call("POST", `/api/sessions/${object.sessionId}/clicks`, { ...point, positive })),
          "Segmenting…");
}

function operation(name) {
  const object = activeObject();
  if (!object) return;
  enqueue(async () => show(await call("POST", `/api/sessions/${object.sessionId}/${name}`)), "Segmenting…");
}

let press = null;  // the pointer press in progress: where it started, and whether it became a pan
overlay.addEventListener("pointerdown", (event) => {
  overlay.setPointerCapture(event.pointerId);
  press = { button: event.button, x: event.clientX, y: event.clientY, view: { ...state.view }, panning: false };
});
overlay.addEventListener("pointermove", (event) => {
  if (!press) return;
  const dx = event.clientX - press.x;
  const dy = event.clientY - press.y;
  if (!press.panning && Math.hypot(dx, dy) < DRAG_PX) return;
  press.panning = true;
  state.view = { ...press.view, x: press.view.x + dx, y: press.view.y + dy };
  applyView();
});
overlay.addEventListener("pointerup", (event) => {
  const done = press;
  press = null;
  if (!done || done.panning) return;
  if (done.button === 0) click(event, true);
  else if (done.button === 2) click(event, false);
});
overlay.addEventListener("pointercancel", () => { press = null; });
overlay.addEventListener("contextmenu", (event) => event.preventDefault());
viewport.addEventListener("wheel", (event) => {
  if (!state.width) return;
  event.preventDefault();
  zoomAt(Math.exp(-event.deltaY * 0.0015), event.clientX, event.clientY);
}, { passive: false });
window.addEventListener("resize", () => (state.width ? fitView() : drawOverlay()));

// ------------------------------------------------------------------ export
function saveBlob(blob, name) {
  const link = Object.assign(document.createElement("a"), { href: URL.createObjectURL(blob), download: name });
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

async function exportPngs() {
  for (const [index, object] of state.objects.entries()) {
    if (!object.result.clicks.length) continue;
    const response = await fetch(`/api/sessions/${object.sessionId}/mask.png`, { headers: authHeaders() });
    if (!response.ok) throw new Error(`download failed: HTTP ${response.status}`);
    saveBlob(await response.blob(), `${state.name}-object-${index + 1}.png`);
  }
  setStatus("Saved a PNG per object (255 = object).");
}

// COCO: polygons as the segmentation, the exact mask as uncompressed RLE beside it.
async function exportCoco() {
  const annotations = [];
  for (const [index, object] of state.objects.entries()) {
    if (!object.result.clicks.length) continue;
    const result = await call("GET", `/api/sessions/${object.sessionId}?mask=rle&polygons=true`);
    const rle = result.mask.data;
    annotations.push({ id: annotations.length + 1, image_id: 1, category_id: 1, iscrowd: 0, object: index + 1,
                       segmentation: result.polygons.filter((p) => p.length >= 3).map((p) => p.flat()),
                       rle, area: rleArea(rle), bbox: rleBox(rle),
                       clicks: result.clicks.map((c) => ({ x: c.x, y: c.y, positive: c.positive })) });
  }
  const coco = { info: { description: "i2f-deploy", date_created: new Date().toISOString() },
                 images: [{ id: 1, file_name: state.name, width: state.width, height: state.height }],
                 categories: [{ id: 1, name: "object" }], annotations };
  saveBlob(new Blob([JSON.stringify(coco)], { type: "application/json" }), `${state.name}.coco.json`);
  setStatus(`Saved ${annotations.length} object(s) as COCO JSON.`);
}

// Uncompressed COCO RLE: run lengths in column-major order, background first.
function rleArea(rle) {
  return rle.counts.reduce((sum, run, i) => sum + (i % 2 ? run : 0), 0);
}

function rleBox(rle) {
  const height = rle.size[0];
  let [x0, y0, x1, y1] = [Infinity, Infinity, -1, -1];
  let at = 0;
  rle.counts.forEach((run, i) => {
    if (i % 2 && run) {
      const first = at;
      const last = at + run - 1;
      const [c0, c1] = [Math.floor(first / height), Math.floor(last / height)];
      x0 = Math.min(x0, c0);
      x1 = Math.max(x1, c1);
      y0 = Math.min(y0, c0 === c1 ? first % height : 0);
      y1 = Math.max(y1, c0 === c1 ? last % height : height - 1);
    }
    at += run;
  });
  return x1 < 0 ? [0, 0, 0, 0] : [x0, y0, x1 - x0 + 1, y1 - y0 + 1];
}

// ------------------------------------------------------------------ opening files
function openFile(file) {
  if (file) enqueue(() => openImage(file), "Reading the image…");
}

$("file").addEventListener("change", (event) => openFile(event.target.files[0]));
viewport.addEventListener("dragover", (event) => {
  event.preventDefault();
  viewport.classList.add("dropping");
});
viewport.addEventListener("dragleave", () => viewport.classList.remove("dropping"));
viewport.addEventListener("drop", (event) => {
  event.preventDefault();
  viewport.classList.remove("dropping");
  openFile(event.dataTransfer.files[0]);
});
document.addEventListener("paste", (event) => {
  const file = [...event.clipboardData.files].find((f) => f.type.startsWith("image/"));
  if (!file) return;
  event.preventDefault();
  openFile(file);
});

// ------------------------------------------------------------------ buttons and keys
$("new-object").addEventListener("click", () => enqueue(addObject));
$("undo").addEventListener("click", () => operation("undo"));
$("redo").addEventListener("click", () => operation("redo"));
$("reset").addEventListener("click", () => operation("reset"));
$("opacity").addEventListener("input", setOpacity);
$("hide").addEventListener("click", toggleHidden);
$("fit").addEventListener("click", fitView);
$("export-png").addEventListener("click", () => enqueue(exportPngs, "Saving…"));
$("export-coco").addEventListener("click", () => enqueue(exportCoco, "Saving…"));
$("help-button").addEventListener("click", () => $("help").showModal());

document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement && event.target.type !== "range") return;
  const key = event.key.toLowerCase();
  if (event.ctrlKey || event.metaKey) {
    if (key === "z" && !event.shiftKey) operation("undo");
    else if ((key === "z" && event.shiftKey) || key === "y") operation("redo");
    else return;  // Ctrl+V and the rest keep their meaning
  } else if (event.altKey) {
    return;
  } else if (event.key === "?") $("help").showModal();
  else if (key === "f") fitView();
  else if (key === "h") toggleHidden();
  else if (key === "n" && state.imageId) enqueue(addObject);
  else if (key === "r") operation("reset");
  else if (event.key === "Tab" && state.objects.length) selectObject((state.active + 1) % state.objects.length);
  else if (event.key === "+" || event.key === "=") zoomAtCentre(1.25);
  else if (event.key === "-") zoomAtCentre(0.8);
  else return;
  event.preventDefault();
});

setOpacity();
document.body.dataset.state = "ready";
