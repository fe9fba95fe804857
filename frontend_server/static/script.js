// petseg page: upload (picker, drag-and-drop, paste, samples) -> /api/segment -> show results.
"use strict";

const $ = (id) => document.getElementById(id);
const drop = $("drop"), fileInput = $("file"), statusLine = $("status"), errorBox = $("error");
let busy = false;

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

function showResult(file, result, millis) {
  const original = URL.createObjectURL(file);
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

async function segment(file) {
  if (busy || !file) return;
  showError("");
  setBusy(true, `Segmenting ${file.name || "image"}…`);
  const form = new FormData();
  form.append("file", file, file.name || "upload");
  const started = performance.now();
  try {
    const response = await fetch("/api/segment", { method: "POST", body: form });
    const millis = performance.now() - started;
    let body;
    try { body = await response.json(); } catch { body = null; }
    if (!response.ok) {
      const reason = body && body.message ? body.message : response.statusText;
      showError(`Could not segment this image (HTTP ${response.status}): ${reason}`);
      return;
    }
    showResult(file, body, millis);
  } catch (err) {
    showError(`The server could not be reached: ${err.message}`);
  } finally {
    setBusy(false);
  }
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
