// petseg page: while the first model is prepared, its training's progress (GET /api/training);
// then the model card, and upload (picker, drag-and-drop, paste, samples) -> /api/segment ->
// show results; optionally the same upload through a second model version.
"use strict";

const $ = (id) => document.getElementById(id);
const drop = $("drop"), fileInput = $("file"), statusLine = $("status"), errorBox = $("error");
let busy = false;
let card = null;      // GET /api/model: the default version's card and the versions there are
let lastFile = null;  // the upload the download links and the comparison refer to
let originalUrl = null;  // lastFile's blob: URL, shown as the original and under the overlay
// What an upload shows; a new upload hides them, so that neither its progress nor its error
// sits beside the figures of an earlier image.
const RESULT_PANELS = ["results", "stats", "comparison", "agreement"];

function setBusy(on, text) {
  busy = on;
  statusLine.textContent = text || "";
  statusLine.classList.toggle("busy", on);
  document.querySelectorAll("button, input[type=file]").forEach((el) => { el.disabled = on; });
}

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = !message;
}

function dataUrl(base64, type) {
  return `data:${type};base64,${base64}`;
}

function hideResults() {
  RESULT_PANELS.forEach((id) => { $(id).hidden = true; });
}

function showResult(file, result, millis) {
  if (originalUrl) URL.revokeObjectURL(originalUrl);
  const original = originalUrl = URL.createObjectURL(file);
  lastFile = file;
  const mask = dataUrl(result.mask_png, "image/png");
  $("original").src = original;
  $("overlay-base").src = original;
  $("mask").src = mask;
  $("overlay-mask").src = mask;
  $("mask-download").href = mask;
  $("overlay-download").href = dataUrl(result.overlay_jpeg, "image/jpeg");
  $("foreground").textContent = `${(100 * result.foreground_fraction).toFixed(1)} %`;
  $("found").textContent = result.found.length
    ? result.found.map((f) => `${f.name} ${(100 * f.fraction).toFixed(1)} %`).join(", ")
    : "no pet";
  $("latency").textContent = `${Math.round(millis)} ms`;
  $("model").textContent = `${result.model.name} ${result.model.version}`;
  $("results").hidden = false;
  $("stats").hidden = false;
}

// -- talking to the API ------------------------------------------------------------------
class ApiError extends Error {}

async function post(file, query) {
  const form = new FormData();
  form.append("file", file, file.name || "upload");
  const response = await fetch(`/api/segment${query}`, { method: "POST", body: form });
  if (response.ok) return response;
  let reason = response.statusText;
  try { reason = (await response.json()).message || reason; } catch { /* not JSON */ }
  throw new ApiError(`Could not segment this image (HTTP ${response.status}): ${reason}`);
}

async function segment(file) {
  if (busy || !file) return;
  showError("");
  hideResults();
  setBusy(true, `Segmenting ${file.name || "image"}…`);
  const other = $("compare-version").value;
  const started = performance.now();
  try {
    const [main, compared] = await Promise.all([
      post(file, "").then((r) => r.json()),
      other ? post(file, `?version=${encodeURIComponent(other)}`).then((r) => r.json()) : null,
    ]);
    showResult(file, main, performance.now() - started);
    if (compared) await showComparison(main, compared);
  } catch (err) {
    showError(err instanceof ApiError ? err.message : `The server could not be reached: ${err.message}`);
  } finally {
    setBusy(false);
  }
}

async function download(output, name) {
  if (!lastFile) return;
  try {
    const blob = await (await post(lastFile, `?output=${output}`)).blob();
    const link = Object.assign(document.createElement("a"), {
      href: URL.createObjectURL(blob), download: name,
    });
    link.click();
    URL.revokeObjectURL(link.href);
  } catch (err) {
    showError(err.message);
  }
}

// -- the model card and the versions to compare -------------------------------------------
function describeModel(info) {
  const data = info.training_data || {};
  const images = data.images ? ` (${data.images.train} training images)` : "";
  const score = info.evaluation && info.evaluation.dataset ? info.evaluation.dataset.fg_iou : null;
  const parts = [
    `${info.name} ${info.version}`, info.architecture, `${info.input_size} px`, info.precision,
    `trained on ${data.kind || "unknown data"}${images}`,
  ];
  if (score != null) parts.push(`test foreground IoU ${score.toFixed(3)}`);
  return parts.join(" · ");
}

async function loadModelCard() {
  const response = await fetch("/api/model");
  if (!response.ok) return;
  card = await response.json();
  $("model-summary").textContent = describeModel(card);
  $("synthetic-notice").hidden = (card.training_data || {}).kind !== "synthetic";
  const others = card.versions.filter((v) => v !== card.default_version);
  others.forEach((version) => $("compare-version").append(new Option(version, version)));
  $("compare").hidden = others.length === 0;
  $("model-card").hidden = false;
}

// -- waiting for the model: a first run trains it while the page shows how far it got ------
const TRAINING_POLL_MS = 2000;
const TRAINING_TITLES = {
  starting: "Getting the model ready…",
  training: "Training the demo model…",
  exporting: "Exporting the trained model…",
  failed: "The model could not be prepared",
};

function formatScore(value) {
  return value == null ? "–" : value.toFixed(4);
}

function formatSeconds(seconds) {
  if (seconds == null) return "estimating…";
  const whole = Math.round(seconds);
  return whole < 60 ? `${whole} s` : `${Math.floor(whole / 60)} min ${whole % 60} s`;
}

// The curve in a 100 x 100 box: epochs across, 0 to 1 upwards inside a margin that keeps the
// lines' width in view (the loss scaled to its highest).
function drawCurve(history, epochs) {
  const last = Math.max(epochs || 0, history.length, 1);
  const highest = Math.max(...history.map((p) => p.loss || 0), 1e-9);
  const line = (value) => history.filter((p) => value(p) != null)
    .map((p) => `${(100 * p.epoch / last).toFixed(2)},${(95 - 90 * value(p)).toFixed(2)}`)
    .join(" ");
  $("curve-loss").setAttribute("points", line((p) => p.loss == null ? null : p.loss / highest));
  $("curve-miou").setAttribute("points", line((p) => p.val_miou));
}

function showTraining(progress) {
  $("training-title").textContent = TRAINING_TITLES[progress.state] || progress.state;
  $("training-detail").textContent = progress.detail;
  $("training-epoch").textContent = progress.epochs ? `${progress.epoch} of ${progress.epochs}` : "–";
  $("training-loss").textContent = formatScore(progress.loss);
  $("training-miou").textContent = formatScore(progress.val_miou);
  $("training-left").textContent = progress.state === "training"
    ? formatSeconds(progress.seconds_left) : "–";
  drawCurve(progress.history, progress.epochs);
  $("training").classList.toggle("failed", progress.state === "failed");
  $("training").hidden = false;
  drop.hidden = true;
}

// Until the model is served: the progress, asked again every TRAINING_POLL_MS (an unanswered
// request too: the server may be busy training). Then the upload and the model card, no reload.
async function waitForModel() {
  let progress;
  try {
    const response = await fetch("/api/training");
    progress = response.ok ? await response.json() : { state: "ready" };  // an older server
  } catch {
    setTimeout(waitForModel, TRAINING_POLL_MS);
    return;
  }
  if (progress.state === "ready") {
    $("training").hidden = true;
    drop.hidden = false;
    loadModelCard();
    return;
  }
  showTraining(progress);
  if (progress.state !== "failed") setTimeout(waitForModel, TRAINING_POLL_MS);
}

// -- comparing two masks -------------------------------------------------------------------
async function pixels(src) {
  const image = new Image();
  image.src = src;
  await image.decode();
  const canvas = Object.assign(document.createElement("canvas"), {
    width: image.naturalWidth, height: image.naturalHeight,
  });
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  return context.getImageData(0, 0, canvas.width, canvas.height);
}

function classIds(data, classes) {
  const byColour = new Map(classes.map((c) => [c.color.join(","), c.id]));
  const ids = new Uint8Array(data.width * data.height);
  for (let i = 0; i < ids.length; i++) {
    const rgb = `${data.data[4 * i]},${data.data[4 * i + 1]},${data.data[4 * i + 2]}`;
    ids[i] = byColour.get(rgb) ?? 0;
  }
  return ids;
}

async function showComparison(a, b) {
  const src = [dataUrl(a.mask_png, "image/png"), dataUrl(b.mask_png, "image/png")];
  $("mask-a").src = src[0];
  $("mask-b").src = src[1];
  $("caption-a").textContent = `version ${a.model.version} (default)`;
  $("caption-b").textContent = `version ${b.model.version}`;
  const [pa, pb] = await Promise.all(src.map(pixels));
  const [ia, ib] = [classIds(pa, a.classes), classIds(pb, a.classes)];
  const canvas = $("difference");
  canvas.width = pa.width;
  canvas.height = pa.height;
  const context = canvas.getContext("2d");
  const view = context.createImageData(pa.width, pa.height);
  let differ = 0;
  const inter = new Array(a.classes.length).fill(0), union = new Array(a.classes.length).fill(0);
  for (let i = 0; i < ia.length; i++) {
    const same = ia[i] === ib[i];
    differ += same ? 0 : 1;
    view.data.set(same ? [40, 40, 40, 255] : [255, 0, 255, 255], 4 * i);
    for (const id of new Set([ia[i], ib[i]])) {
      union[id] += 1;
      if (same) inter[id] += 1;
    }
  }
  context.putImageData(view, 0, 0);
  $("disagreement").textContent = `${(100 * differ / ia.length).toFixed(1)} % of pixels`;
  $("agreement").replaceChildren(...a.classes.map((c) => {
    const box = document.createElement("div");
    const iou = union[c.id] ? (inter[c.id] / union[c.id]).toFixed(3) : "n/a";
    box.append(Object.assign(document.createElement("dt"), { textContent: `IoU ${c.name}` }),
      Object.assign(document.createElement("dd"), { textContent: iou, id: `iou-${c.name}` }));
    return box;
  }));
  $("comparison").hidden = $("agreement").hidden = false;
}

fileInput.addEventListener("change", () => segment(fileInput.files[0]));

["dragenter", "dragover"].forEach((type) => drop.addEventListener(type, (event) => {
  event.preventDefault();
  drop.classList.add("dragging");
}));
["dragleave", "drop"].forEach((type) => drop.addEventListener(type, () => {
  drop.classList.remove("dragging");
}));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  segment(event.dataTransfer.files[0]);
});

document.addEventListener("paste", (event) => {
  const item = [...event.clipboardData.items].find((i) => i.kind === "file");
  if (item) segment(item.getAsFile());
});

document.querySelectorAll(".sample").forEach((button) => button.addEventListener("click", async () => {
  const response = await fetch(button.dataset.src);
  const blob = await response.blob();
  segment(new File([blob], button.dataset.src.split("/").pop(), { type: blob.type }));
}));

$("opacity").addEventListener("input", (event) => {
  $("overlay-mask").style.opacity = event.target.value / 100;
});

document.querySelectorAll(".vector-download").forEach((link) => link.addEventListener("click", (event) => {
  event.preventDefault();
  download(link.dataset.output, link.dataset.name);
}));

waitForModel();
