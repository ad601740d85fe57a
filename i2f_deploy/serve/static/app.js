// The click-to-segment page: posts the image once, then clicks/undo/redo to the native API and
// draws the returned mask (a 1-bit PNG at the image's resolution) and polygons over the image.
"use strict";

const $ = (id) => document.getElementById(id);
const imageCanvas = $("image");
const overlay = $("overlay");
const state = { sessionId: null, width: 0, height: 0, result: null, busy: Promise.resolve() };

function setStatus(text, isError = false) {
  $("status").textContent = text;
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

// One request at a time, in click order.
function enqueue(task) {
  state.busy = state.busy.then(async () => {
    document.body.dataset.state = "busy";
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

async function openImage(file) {
  const bitmap = await createImageBitmap(file);
  const form = new FormData();
  form.append("file", file);
  setStatus("Uploading…");
  const image = await call("POST", "/api/images", form);
  const session = await call("POST", "/api/sessions?mask=none&polygons=false", { image_id: image.image_id });
  Object.assign(state, { sessionId: session.session_id, width: image.width, height: image.height });
  for (const canvas of [imageCanvas, overlay]) {
    canvas.width = image.width;
    canvas.height = image.height;
  }
  imageCanvas.getContext("2d").drawImage(bitmap, 0, 0);
  $("stage").hidden = false;
  $("download").href = `/api/sessions/${session.session_id}/mask.png`;
  await show(session);
  setStatus(`${image.width}×${image.height}, ${image.encoded ? "already encoded" : "encoding in the background"}: click on the object.`);
}

async function show(result) {
  state.result = result;
  const context = overlay.getContext("2d");
  context.clearRect(0, 0, overlay.width, overlay.height);
  let pixels = 0;
  if (result.mask) {
    const mask = await loadImage(result.mask.data);
    context.drawImage(mask, 0, 0);
    const data = context.getImageData(0, 0, overlay.width, overlay.height);
    const p = data.data;
    for (let i = 0; i < p.length; i += 4) {
      const on = p[i] > 127;
      pixels += on;
      p[i] = 30; p[i + 1] = 144; p[i + 2] = 255; p[i + 3] = on ? 110 : 0;
    }
    context.putImageData(data, 0, 0);
  }
  const scale = Math.max(1, overlay.width / 800);
  context.lineWidth = 2 * scale;
  context.strokeStyle = "#ffd400";
  for (const polygon of result.polygons || []) {
    context.beginPath();
    polygon.forEach(([x, y], i) => (i ? context.lineTo(x + 0.5, y + 0.5) : context.moveTo(x + 0.5, y + 0.5)));
    context.closePath();
    context.stroke();
  }
  for (const click of result.clicks) {
    context.beginPath();
    context.arc(click.x + 0.5, click.y + 0.5, 5 * scale, 0, 2 * Math.PI);
    context.fillStyle = click.positive ? "#21c55d" : "#ef4444";
    context.fill();
    context.lineWidth = 1.5 * scale;
    context.strokeStyle = "#fff";
    context.stroke();
  }
  overlay.dataset.maskPixels = String(pixels);
  overlay.dataset.clicks = String(result.clicks.length);
  $("undo").disabled = !result.can_undo;
  $("redo").disabled = !result.can_redo;
  $("reset").disabled = !result.clicks.length;
  $("download").setAttribute("aria-disabled", String(!result.clicks.length));
  const t = result.timings;
  if (result.clicks.length) {
    setStatus(`${result.clicks.length} click(s), ${pixels} px · decoder ${t.decode_ms} ms` +
              (t.encode_wait_ms > 1 ? `, waited ${t.encode_wait_ms} ms for the encoder` : "") + `, total ${t.total_ms} ms`);
  }
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("cannot read the mask returned by the server"));
    image.src = src;
  });
}

function toImagePixel(event) {
  const box = overlay.getBoundingClientRect();
  const x = Math.floor((event.clientX - box.left) * overlay.width / box.width);
  const y = Math.floor((event.clientY - box.top) * overlay.height / box.height);
  return { x: Math.min(Math.max(x, 0), overlay.width - 1), y: Math.min(Math.max(y, 0), overlay.height - 1) };
}

function click(event, positive) {
  event.preventDefault();
  if (!state.sessionId) return;
  const point = toImagePixel(event);
  enqueue(async () => show(await call("POST", `/api/sessions/${state.sessionId}/clicks`, { ...point, positive })));
}

function operation(name) {
  if (!state.sessionId) return;
  enqueue(async () => show(await call("POST", `/api/sessions/${state.sessionId}/${name}`)));
}

$("file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) enqueue(() => openImage(file));
});
overlay.addEventListener("click", (event) => click(event, true));
overlay.addEventListener("contextmenu", (event) => click(event, false));
$("download").addEventListener("click", async (event) => {
  if (!sessionStorage.getItem("i2f-token")) return;  // no token: the plain link works
  event.preventDefault();  // a link sends no Authorization header: fetch the PNG and save it
  const link = event.currentTarget;
  const response = await fetch(link.href, { headers: authHeaders() });
  if (!response.ok) return setStatus(`download failed: HTTP ${response.status}`, true);
  const saver = Object.assign(document.createElement("a"), { href: URL.createObjectURL(await response.blob()),
                                                             download: "mask.png" });
  saver.click();
  URL.revokeObjectURL(saver.href);
});
$("undo").addEventListener("click", () => operation("undo"));
$("redo").addEventListener("click", () => operation("redo"));
$("reset").addEventListener("click", () => operation("reset"));
document.addEventListener("keydown", (event) => {
  if (!(event.ctrlKey || event.metaKey)) return;
  const key = event.key.toLowerCase();
  if (key === "z" && !event.shiftKey) operation("undo");
  else if ((key === "z" && event.shiftKey) || key === "y") operation("redo");
  else return;
  event.preventDefault();
});
document.body.dataset.state = "ready";
