// Murmur studio page: plain JavaScript over the studio's JSON API (studio/server.py) and its live WebSocket.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const $ = (sel) => document.querySelector(sel);
const PLAYER_TARGET_S = 0.05, PLAYER_MAX_S = 0.15;  // the live player's buffer: what it keeps, and drops beyond
const state = { recordings: [], runs: [], controls: {}, overviews: {}, live: null, ab: "A" };
// what went wrong in the page's own code (the browser test reads it: an error only in the console is still an error)
window.studioErrors = [];
window.studioMidiMoves = [];
window.addEventListener("error", (e) => window.studioErrors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => window.studioErrors.push(String(e.reason && e.reason.message || e.reason)));

async function api(path, options = {}) {
  const headers = Object.assign({ "X-Studio-Token": TOKEN }, options.headers || {});
  if (options.json !== undefined) { headers["Content-Type"] = "application/json"; options.body = JSON.stringify(options.json); }
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = { error: text }; }
  if (!response.ok) throw new Error((data && data.error) || text || response.statusText);
  return data;
}

function say(text, isError = true) {
  const box = $("#message");
  box.textContent = text; box.hidden = !text;
  box.className = isError ? "message error" : "message";
}

function fmt(x, digits = 1) { return x === null || x === undefined || Number.isNaN(x) ? "–" : Number(x).toFixed(digits); }
function stamp(s) { s = Math.max(0, s); return `${Math.floor(s / 60)}:${(s % 60).toFixed(1).padStart(4, "0")}`; }
function clock(s) { s = Math.max(0, Math.round(s)); return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`; }

// ---------------------------------------------------------------- material
async function upload(files) {
  const form = new FormData();
  let n = 0;
  for (const f of files) { form.append("file", f, f.webkitRelativePath || f.name); n++; }
  if (!n) return;
  say(`adding ${n} recording(s) …`, false);
  try {
    const r = await fetch("/api/recordings", { method: "POST", body: form, headers: { "X-Studio-Token": TOKEN } });
    const data = await r.json();
    say((data.errors || []).join("\n"));
  } catch (e) { say(String(e)); }
  await refresh();
}

function setupDrop() {
  const drop = $("#drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); upload(e.dataTransfer.files); });
  $("#files").addEventListener("change", (e) => { upload(e.target.files); e.target.value = ""; });
  $("#folder").addEventListener("change", (e) => {
    upload([...e.target.files].filter((f) => /\.(wav|flac|ogg|oga|opus|mp3|aiff?|aifc)$/i.test(f.name))); e.target.value = "";
  });
}

function renderRecordings() {
  const box = $("#recordings");
  const names = state.recordings.map((r) => r.name);
  for (const el of [...box.children]) if (!names.includes(el.dataset.name)) el.remove();
  let total = 0;
  for (const rec of state.recordings) {
    let el = box.querySelector(`.recording[data-name="${CSS.escape(rec.name)}"]`);
    if (!el) {
      el = document.createElement("div");
      el.className = "recording"; el.dataset.name = rec.name;
      el.innerHTML = `<div class="head"><h3 class="name"></h3><span><span class="info muted"></span>
        <button class="all">use all of it</button> <button class="none">use none of it</button>
        <button class="remove">remove</button></span></div>
        <canvas class="wave" width="900" height="120" role="img"></canvas><canvas class="ruler" width="900" height="18" aria-hidden="true"></canvas>
        <div class="regions"><span class="muted">Parts used for training:</span> <span class="region-list"></span>
          <span class="add-region"><label>from <input class="from" type="number" min="0" step="0.1" size="6"> s</label>
          <label>to <input class="to" type="number" min="0" step="0.1" size="6"> s</label>
          <button class="add">use this part</button></span></div>`;
      box.appendChild(el);
      el.querySelector(".name").textContent = rec.name;
      for (const button of [".all", ".none", ".remove", ".add"]) {  // the visible words, then which recording
        const b = el.querySelector(button);
        b.setAttribute("aria-label", `${b.textContent}: ${rec.name}`);
      }
      el.querySelector(".wave").setAttribute("aria-label", `${rec.name}: its sound over time (top: the pitches, bottom: the waveform); drag across it to choose a part`);
      for (const field of ["from", "to"]) el.querySelector(`.${field}`).setAttribute("aria-label", `${rec.name}: use the part ${field} (seconds)`);
      el.querySelector(".add").onclick = () => {
        const current = state.recordings.find((r) => r.name === rec.name) || rec;
        const a = Number(el.querySelector(".from").value), b = Number(el.querySelector(".to").value);
        if (!(b > a)) { say(`${rec.name}: the part's end must come after its start (in seconds, up to ${fmt(current.seconds)})`); return; }
        saveRegions(rec.name, addRegion(current, a, b));
      };
      el.querySelector(".all").onclick = () => saveRegions(rec.name, [[0, rec.seconds]]);
      el.querySelector(".none").onclick = () => saveRegions(rec.name, []);
      el.querySelector(".remove").onclick = async () => {
        try { await api(`/api/recordings/${encodeURIComponent(rec.name)}`, { method: "DELETE" }); } catch (e) { say(String(e.message || e)); }
        refresh();
      };
      setupRegionDrag(el.querySelector("canvas"), rec.name);
      api(`/api/recordings/${encodeURIComponent(rec.name)}/overview`)
        .then((ov) => { state.overviews[rec.name] = ov; drawRecording(el, rec.name); el.dataset.drawn = "1"; })
        .catch((e) => say(`${rec.name}: ${e.message || e}`));
    }
    const chosen = rec.regions.reduce((s, [a, b]) => s + (b - a), 0);
    total += chosen;
    el.querySelector(".info").textContent = `${stamp(rec.seconds)} long · ${stamp(chosen)} of it used · `;
    el.dataset.regions = JSON.stringify(rec.regions);
    const list = el.querySelector(".region-list");
    list.innerHTML = "";
    if (!rec.regions.length) list.textContent = "none: drag across the picture, or type a part below. ";
    rec.regions.forEach(([a, b], i) => {
      const item = document.createElement("span");
      item.className = "region";
      item.innerHTML = `<span class="times"></span> <button class="drop-region">leave out</button> `;
      item.querySelector(".times").textContent = `${stamp(a)} to ${stamp(b)} (${fmt(b - a)} s)`;
      item.querySelector(".drop-region").setAttribute("aria-label", `leave out ${stamp(a)} to ${stamp(b)} of ${rec.name}`);
      item.querySelector(".drop-region").onclick = () => saveRegions(rec.name, rec.regions.filter((_, j) => j !== i));
      list.appendChild(item);
    });
    el.querySelector(".from").max = el.querySelector(".to").max = rec.seconds.toFixed(1);
    drawRecording(el, rec.name);
    drawRuler(el.querySelector(".ruler"), rec.seconds);
  }
  $("#material-total").textContent = state.recordings.length
    ? `${stamp(total)} of material will be used for training.`
    : "No recordings yet: record a take above, or drop a recording (or a folder of them) in the box.";
}

// a part typed in: it replaces "all of it" (the default), else joins the parts already chosen
function addRegion(rec, a, b) {
  a = Math.max(0, Math.min(rec.seconds, a)); b = Math.max(0, Math.min(rec.seconds, b));
  const whole = rec.regions.length === 1 && rec.regions[0][0] <= 0.001 && rec.regions[0][1] >= rec.seconds - 0.001;
  return whole ? [[a, b]] : rec.regions.concat([[a, b]]);
}

// the time ruler under a recording: a tick every 1, 2, 5, 10, 15, 30 or 60 s, so about 8-15 labels fit
function drawRuler(canvas, seconds) {
  const shown = Math.round(canvas.clientWidth);  // drawn at the size it is shown: sharp labels, not stretched
  if (shown > 100 && canvas.width !== shown) canvas.width = shown;
  const g = canvas.getContext("2d"), W = canvas.width, H = canvas.height;
  g.clearRect(0, 0, W, H);
  const every = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300].find((t) => seconds / t <= 15) || 600;
  g.fillStyle = "#333"; g.font = "11px system-ui, sans-serif"; g.textBaseline = "top";
  for (let t = 0; t <= seconds + 1e-6; t += every) {
    const x = Math.round(t / seconds * (W - 1));
    g.fillRect(x, 0, 1, 5);
    const label = every < 1 ? stamp(t) : clock(t);
    const w = g.measureText(label).width;
    g.fillText(label, Math.min(Math.max(0, x - w / 2), W - w), 6);
  }
}

function drawRecording(el, name) {
  const rec = state.recordings.find((r) => r.name === name);
  const ov = state.overviews[name];
  const canvas = el.querySelector("canvas.wave");
  const g = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, half = H / 2;
  g.fillStyle = "#111"; g.fillRect(0, 0, W, H);
  if (ov) {
    const spec = Uint8Array.from(atob(ov.spectrogram), (c) => c.charCodeAt(0));
    const img = g.createImageData(W, half);
    for (let x = 0; x < W; x++) {
      const col = Math.min(ov.columns - 1, Math.floor(x * ov.columns / W));
      for (let y = 0; y < half; y++) {
        const band = Math.min(ov.bands - 1, Math.floor((half - 1 - y) * ov.bands / half));
        const v = spec[col * ov.bands + band];
        const i = (y * W + x) * 4;
        img.data[i] = v; img.data[i + 1] = v * 0.6; img.data[i + 2] = 255 - v * 0.7; img.data[i + 3] = 255;
      }
    }
    g.putImageData(img, 0, 0);
    g.fillStyle = "#9cf";
    for (let x = 0; x < W; x++) {
      const col = Math.min(ov.columns - 1, Math.floor(x * ov.columns / W));
      const top = half + half / 2 - ov.max[col] * half / 2, bottom = half + half / 2 - ov.min[col] * half / 2;
      g.fillRect(x, top, 1, Math.max(1, bottom - top));
    }
  }
  if (rec) {
    g.fillStyle = "rgba(0,0,0,0.55)";
    let last = 0;
    for (const [a, b] of rec.regions) { g.fillRect(last * W / rec.seconds, 0, (a - last) * W / rec.seconds, H); last = b; }
    g.fillRect(last * W / rec.seconds, 0, (rec.seconds - last) * W / rec.seconds, H);
    g.strokeStyle = "#fc3"; g.lineWidth = 2;
    for (const [a, b] of rec.regions) g.strokeRect(a * W / rec.seconds + 1, 1, (b - a) * W / rec.seconds - 2, H - 2);
  }
  if (el._drag) {
    const [a, b] = el._drag;
    g.fillStyle = "rgba(255,204,51,0.3)";
    g.fillRect(Math.min(a, b) * W, 0, Math.abs(b - a) * W, H);
  }
}

function setupRegionDrag(canvas, name) {
  const el = canvas.parentElement;
  const at = (e) => { const r = canvas.getBoundingClientRect(); return Math.min(1, Math.max(0, (e.clientX - r.left) / r.width)); };
  canvas.addEventListener("mousedown", (e) => { el._drag = [at(e), at(e)]; drawRecording(el, name); });
  canvas.addEventListener("mousemove", (e) => { if (el._drag) { el._drag[1] = at(e); drawRecording(el, name); } });
  window.addEventListener("mouseup", (e) => {
    if (!el._drag) return;
    const [a, b] = el._drag; el._drag = null;
    const rec = state.recordings.find((r) => r.name === name);
    if (!rec) return;
    const s0 = Math.min(a, b) * rec.seconds, s1 = Math.max(a, b) * rec.seconds;
    let regions;
    if (s1 - s0 < 0.05) {  // a click: remove the region under it
      regions = rec.regions.filter(([x, y]) => !(s0 >= x && s0 <= y));
    } else {
      // a drag replaces "everything selected" (the default) by the dragged region, else adds it
      regions = addRegion(rec, s0, s1);
    }
    saveRegions(name, regions);
  });
}

async function saveRegions(name, regions) {
  try {
    const rec = await api(`/api/recordings/${encodeURIComponent(name)}/regions`, { method: "PUT", json: { regions } });
    const i = state.recordings.findIndex((r) => r.name === name);
    if (i >= 0) state.recordings[i] = rec;
    renderRecordings();
  } catch (e) { say(String(e)); }
}

// ---------------------------------------------------------------- record in the page
// The microphone through an AudioWorklet (worklet.js, TakeRecorder): its samples as captured, at the
// AudioContext's rate; a kept take becomes a 32-bit float WAV file and goes through the same upload as a dropped file.
const recorder = { phase: "idle", chunks: [], peak: 0, takes: 0 };
window.studioRecorder = recorder;  // for the browser test: the phase and the rate of the last take

function wavFile(chunks, rate) {
  const n = chunks.reduce((s, c) => s + c.length, 0);
  const view = new DataView(new ArrayBuffer(44 + 4 * n));
  const text = (at, t) => { for (let i = 0; i < t.length; i++) view.setUint8(at + i, t.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + 4 * n, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 3, true); view.setUint16(22, 1, true);  // IEEE float, mono
  view.setUint32(24, rate, true); view.setUint32(28, 4 * rate, true); view.setUint16(32, 4, true); view.setUint16(34, 32, true);
  text(36, "data"); view.setUint32(40, 4 * n, true);
  let at = 44;
  for (const c of chunks) for (let i = 0; i < c.length; i++, at += 4) view.setFloat32(at, c[i], true);
  return new Blob([view.buffer], { type: "audio/wav" });
}

function recorderButtons() {
  const p = recorder.phase;
  $("#rec-start").disabled = p !== "idle";
  $("#rec-stop").disabled = p !== "count-in" && p !== "recording";
  $("#rec-keep").disabled = p !== "stopped"; $("#rec-discard").disabled = p !== "stopped";
  $("#recorder").dataset.phase = p;
}

function showLevel(peak) {
  recorder.peak = Math.max(peak, recorder.peak * 0.85);  // falls back slowly, like a meter's needle
  const db = recorder.peak > 0 ? 20 * Math.log10(recorder.peak) : -Infinity;
  $("#rec-meter").value = Math.max(0, Math.min(60, 60 + db));
  $("#rec-level-words").textContent = db >= -1 ? "too loud: it clips, turn the input down"
    : db < -40 ? "very quiet: move closer or turn the input up" : "good";
}

async function startRecording() {
  if (recorder.phase !== "idle") return;
  recorder.phase = "opening"; recorderButtons();
  $("#rec-status").textContent = "asking for the microphone …";
  try {
    const stream = await navigator.mediaDevices.getUserMedia(
      { audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 } });
    const ctx = new AudioContext();
    await ctx.audioWorklet.addModule("/static/worklet.js");
    const node = new AudioWorkletNode(ctx, "take-recorder", { numberOfOutputs: 1 });
    const silent = ctx.createGain(); silent.gain.value = 0;  // pulls the recorder without playing the microphone back
    ctx.createMediaStreamSource(stream).connect(node); node.connect(silent); silent.connect(ctx.destination);
    Object.assign(recorder, { stream, ctx, node, chunks: [], rate: ctx.sampleRate });
    node.port.onmessage = (e) => {
      showLevel(e.data.peak);
      if (recorder.phase === "recording") {
        recorder.chunks.push(e.data.samples);
        const seconds = recorder.chunks.length * 2048 / recorder.rate;
        $("#rec-status").textContent = `recording: ${clock(seconds)}. Stop when you are done.`;
      }
    };
    await ctx.resume();
    recorder.phase = "count-in"; recorderButtons();
    for (let left = Number($("#count-in").value); left > 0 && recorder.phase === "count-in"; left--) {
      $("#rec-status").textContent = `recording starts in ${left} …`;
      click(ctx, left === 1 ? 1320 : 880);  // a click per second, higher on the last one; none once recording
      await new Promise((done) => setTimeout(done, 1000));
    }
    if (recorder.phase !== "count-in") return;  // stopped during the count-in
    recorder.phase = "recording"; recorderButtons();
    $("#rec-status").textContent = "recording: 0:00. Stop when you are done.";
  } catch (e) {
    releaseMicrophone(); recorder.phase = "idle"; recorderButtons();
    $("#rec-status").textContent = "";
    say(`the microphone could not be opened: ${e.message || e}. Allow this page to use it (the icon in the address bar), or drop a recording instead.`);
  }
}

function click(ctx, hz) {
  const tone = ctx.createOscillator(), level = ctx.createGain(), t = ctx.currentTime;
  tone.frequency.value = hz;
  level.gain.setValueAtTime(0.3, t); level.gain.exponentialRampToValueAtTime(0.001, t + 0.08);
  tone.connect(level); level.connect(ctx.destination);
  tone.start(t); tone.stop(t + 0.1);
}

function releaseMicrophone() {
  if (recorder.stream) for (const track of recorder.stream.getTracks()) track.stop();
  if (recorder.ctx) recorder.ctx.close();
  Object.assign(recorder, { stream: null, ctx: null, node: null });
  $("#rec-meter").value = 0; $("#rec-level-words").textContent = "";
}

function stopRecording() {
  const counting = recorder.phase === "count-in";
  releaseMicrophone();
  const seconds = recorder.chunks.reduce((s, c) => s + c.length, 0) / (recorder.rate || 1);
  if (counting || !seconds) { recorder.phase = "idle"; recorderButtons(); $("#rec-status").textContent = "nothing was recorded"; return; }
  recorder.phase = "stopped"; recorderButtons();
  const take = $("#rec-take");
  if (take.src) URL.revokeObjectURL(take.src);
  take.src = URL.createObjectURL(wavFile(recorder.chunks, recorder.rate)); take.hidden = false;
  $("#rec-status").textContent = `a take of ${clock(seconds)}: listen to it, then keep it (it joins your material) or discard it.`;
}

async function keepTake() {
  if (recorder.phase !== "stopped") return;
  const name = ($("#take-name").value.trim() || `take ${recorder.takes + 1}`).replace(/\.wav$/i, "");
  const file = new File([wavFile(recorder.chunks, recorder.rate)], `${name}.wav`, { type: "audio/wav" });
  discardTake(`kept "${name}": it is in your material below.`);
  recorder.takes++;
  $("#take-name").value = `take ${recorder.takes + 1}`;
  await upload([file]);
}

function discardTake(words = "take discarded.") {
  recorder.chunks = []; recorder.phase = "idle"; recorderButtons();
  const take = $("#rec-take");
  if (take.src) { URL.revokeObjectURL(take.src); take.removeAttribute("src"); }
  take.hidden = true;
  $("#rec-status").textContent = words;
}

// ---------------------------------------------------------------- train
async function startTraining() {
  $("#train-error").hidden = true;
  $("#train-text").dataset.status = "starting";
  try {
    await api("/api/train", { method: "POST", json: { minutes: Number($("#minutes").value), advanced: $("#advanced").value } });
  } catch (e) { showTrainError(String(e.message || e)); }
  pollTraining();
}

function showTrainError(text) { const box = $("#train-error"); box.textContent = text; box.hidden = !text; }

let trainTimer = null;
async function pollTraining() {
  clearTimeout(trainTimer);
  let t;
  try { t = await api("/api/state").then((s) => { applyState(s); return s.train; }); } catch (e) { say(String(e)); return; }
  if (t && (t.status === "training" || t.status === "preparing")) trainTimer = setTimeout(pollTraining, 500);
}

function renderTraining(t) {
  const running = t && (t.status === "training" || t.status === "preparing");
  $("#train").disabled = !!running; $("#cancel").disabled = !running;
  if (!t) {
    $("#train-text").textContent = state.recordings.length ? "Nothing trained yet: press Train to learn from the parts chosen above."
      : "Nothing trained yet: first record or drop a recording in 1 · Material, then press Train.";
    return;
  }
  $("#train-bar").style.width = `${Math.round(100 * (t.status === "done" ? 1 : t.fraction))}%`;
  $("#train-bar").parentElement.setAttribute("aria-valuenow", String(Math.round(100 * (t.status === "done" ? 1 : t.fraction))));
  const p = t.progress || {};
  const pass = p.epoch ? `listening through your material, pass ${p.epoch} (${Math.round(100 * p.batch / Math.max(1, p.batches_per_epoch))} % of it)` : "";
  const doing = stageWords(t.stage) || pass || "getting ready";
  const words = { training: `${t.run}: ${doing}. ${clock(t.elapsed_s)} so far, at most ${clock(t.eta_s)} left.`,
                  preparing: "preparing the material …", done: `${t.run} is ready: it took ${clock(t.elapsed_s)}. Listen to it below.`,
                  failed: `${t.run} did not finish (the reason is below).`, cancelled: `${t.run} was cancelled.` };
  $("#train-text").textContent = words[t.status] || t.status;
  $("#train-text").dataset.status = t.status;
  if (t.status === "failed" || t.status === "cancelled") showTrainError(plainPaths(t.error || t.status));
  drawCurves(t.epochs || []);
}

// the trainer's stage lines, said for an artist (the trainer's own words are in the log)
function stageWords(stage) {
  if (!stage || stage === "training" || stage === "preparing") return "";
  if (/^exporting/.test(stage)) return "packing what it learned for the Pi and checking the packed copy plays the same";
  if (/^skipping/.test(stage)) return "leaving out previews an earlier training wrote into the material";
  if (/^rendering/.test(stage)) return "playing a preview";
  return plainPaths(stage);
}

// a path inside the project says where in words: a run being built, its material, the project's folders
function plainPaths(text) {
  return String(text)
    .replace(/\S*\/runs\/\.(run-[\w-]+)\.partial\/material\/?/g, "the chosen material of $1: ")
    .replace(/\S*\/runs\/\.(run-[\w-]+)\.partial\/bundle\/?/g, "the new run $1")
    .replace(/\S*\/runs\/\.(run-[\w-]+)\.partial\/?/g, "the new run $1")
    .replace(/\S*\/material\/([^\s/]+)\.wav/g, "the recording $1");
}

// the learning chart: x = passes through the material (epochs), y = how far its guesses are from the real next
// moment (the trainer's loss, from 0 at the bottom), for the part it learns from and the part kept aside
function drawCurves(epochs) {
  const c = $("#curves"), g = c.getContext("2d");
  const shown = Math.round(c.clientWidth);  // draw at the size it is shown: sharp text, not stretched
  if (shown > 200 && c.width !== shown) c.width = shown;
  g.clearRect(0, 0, c.width, c.height);
  $("#curves-words").textContent = epochs.length ? curveWords(epochs) : "";
  $("#curves-numbers").textContent = epochs.map((e) => `pass ${e.epoch}: learning part ${fmt(e.loss, 4)}, kept-aside part ${fmt(e.val_loss, 4)}`).join("\n");
  c.setAttribute("aria-label", epochs.length ? `learning chart: ${curveWords(epochs)}` : "learning chart: nothing trained yet");
  const left = 56, right = 12, top = 22, bottom = 34, W = c.width - left - right, H = c.height - top - bottom;
  g.strokeStyle = "#888"; g.lineWidth = 1; g.beginPath(); g.moveTo(left, top); g.lineTo(left, top + H); g.lineTo(left + W, top + H); g.stroke();
  g.fillStyle = "#333"; g.font = "12px system-ui, sans-serif";
  g.textAlign = "center"; g.fillText("passes through your material", left + W / 2, c.height - 4);
  g.save(); g.translate(14, top + H / 2); g.rotate(-Math.PI / 2); g.fillText("error (lower = closer)", 0, 0); g.restore();
  if (!epochs.length) { g.fillText("the chart fills in as it learns", left + W / 2, top + H / 2); g.textAlign = "left"; return; }
  const all = epochs.flatMap((e) => [e.loss, e.val_loss]).filter(Number.isFinite);
  const hi = Math.max(...all) * 1.05 || 1;
  const n = epochs.length;
  const x = (i) => left + (n === 1 ? W / 2 : i * W / (n - 1));
  const y = (v) => top + H - v / hi * H;
  g.textAlign = "center";
  for (let i = 0; i < n; i += Math.max(1, Math.ceil(n / 10))) { g.fillRect(x(i), top + H, 1, 4); g.fillText(String(epochs[i].epoch), x(i), top + H + 16); }
  g.textAlign = "right"; g.fillText("0", left - 4, top + H + 4); g.fillText(fmt(hi, 3), left - 4, top + 10);
  for (const [key, color, dash] of [["loss", "#1f5fa8", []], ["val_loss", "#b4461b", [6, 4]]]) {
    g.strokeStyle = color; g.lineWidth = 2; g.setLineDash(dash); g.beginPath();
    epochs.forEach((e, i) => (i ? g.lineTo(x(i), y(e[key])) : g.moveTo(x(i), y(e[key]))));
    g.stroke();
    if (n === 1) { g.fillStyle = color; g.fillRect(x(0) - 3, y(epochs[0][key]) - 3, 6, 6); }
  }
  g.setLineDash([]); g.textAlign = "left";
  g.fillStyle = "#1f5fa8"; g.fillText("── the part it learns from", left + 8, 14);
  g.fillStyle = "#b4461b"; g.fillText("- - the part kept aside to check it", left + 200, 14);
}

function curveWords(epochs) {
  const first = epochs[0], last = epochs[epochs.length - 1];
  const best = epochs.reduce((b, e) => (e.val_loss < b.val_loss ? e : b), first);
  const trend = epochs.length < 2 ? "One pass so far"
    : last.val_loss < first.val_loss ? "Its guesses got closer on the part kept aside: it is learning your sound"
    : "Its guesses did not get closer on the part kept aside: more material or a longer time may help";
  return `${trend}${best !== last ? ` (closest at pass ${best.epoch}: that one is kept)` : ""}.`;
}

// ---------------------------------------------------------------- listen
// each knob in words: its label, what its ends do, its value with a unit and always the same decimals, and a step
// that lands on the values shown (one arrow-key press = one step)
const KNOBS = {
  temperature: { label: "freedom", ends: "0 = always the likeliest next sound, 2 = wild", show: (v) => v.toFixed(2), step: 0.01 },
  fidelity: { label: "faithfulness", ends: "0 % = loose, 100 % = long real phrases of your recording", show: (v) => `${Math.round(100 * v)} %`, step: 0.01 },
  jump: { label: "jumps to another spot", ends: "how often it jumps somewhere else in your recording", show: (v) => `${v.toFixed(2)} per second`, step: 0.05 },
  position: { label: "where in your recording", ends: "0 % = its start, 100 % = its end", show: (v) => `${Math.round(100 * v)} %`, step: 0.01 },
  spread: { label: "how much of the recording around it", ends: "100 % = all of it", show: (v) => `${Math.round(100 * v)} %`, step: 0.01 },
  gain_db: { label: "volume", ends: "-60 dB = nearly silent, 0 dB = as trained", show: (v) => `${v >= 0 ? "+" : "−"}${Math.abs(v).toFixed(1)} dB`, step: 0.5 },
  hold: { label: "freeze the sound", ends: "holds the current moment" },
};

function knobText(name, value) {
  const k = KNOBS[name];
  return k && k.show ? k.show(Number(value)) : Number(value).toFixed(2);
}

function renderKnobs() {
  const box = $("#knobs");
  if (box.children.length) return;
  for (const [name, spec] of Object.entries(state.controls)) {
    const label = document.createElement("label");
    const words = KNOBS[name] || { label: name.replace(/_/g, " "), ends: "" };
    if (spec.bool) {
      label.innerHTML = `<span class="knob-name"></span><input type="checkbox" id="knob-${name}"><span class="muted small"></span>`;
      label.querySelector("input").checked = spec.default;
      label.querySelector("input").addEventListener("change", (e) => sendControl(name, e.target.checked));
    } else {
      const step = (KNOBS[name] && KNOBS[name].step) || (spec.max - spec.min) / 200;
      label.innerHTML = `<span class="knob-name"></span> <output id="value-${name}"></output>
        <input type="range" id="knob-${name}" min="${spec.min}" max="${spec.max}" step="${step}" value="${spec.default}">
        <span class="muted small"></span>`;
      label.querySelector("output").textContent = knobText(name, spec.default);
      const input = label.querySelector("input");
      input.setAttribute("aria-valuetext", knobText(name, spec.default));
      input.addEventListener("input", (e) => {
        const text = knobText(name, e.target.value);
        $(`#value-${name}`).textContent = text; e.target.setAttribute("aria-valuetext", text);
        sendControl(name, Number(e.target.value));
      });
    }
    label.querySelector(".knob-name").textContent = words.label;
    label.querySelector(".small").textContent = words.ends;
    box.appendChild(knobBox(name, label, words.label));
  }
  const reseed = document.createElement("button");
  reseed.id = "knob-reseed"; reseed.textContent = "take a new random path";
  reseed.onclick = () => sendTurn({ trigger: "reseed" }, "new random path");
  box.appendChild(knobBox("reseed", reseed, "take a new random path"));
}

// a knob (or the new-path button) with its MIDI Learn button and what drives it, shown once a controller is there
function knobBox(name, control, words) {
  const div = document.createElement("div");
  div.className = "knob"; div.dataset.control = name;
  div.appendChild(control);
  const map = document.createElement("span");
  map.className = "midi-map"; map.id = `midi-map-${name}`;
  const learn = document.createElement("button");
  learn.className = "learn"; learn.id = `learn-${name}`; learn.hidden = true;
  learn.innerHTML = `<span class="what">Learn</span><span class="visually-hidden"> a MIDI knob or pad for ${words}</span>`;
  learn.setAttribute("aria-pressed", "false");
  learn.onclick = () => learnMidi(name);
  div.append(map, learn);
  return div;
}

function knobValues() {
  const out = {};
  for (const [name, spec] of Object.entries(state.controls)) {
    const input = $(`#knob-${name}`);
    if (input) out[name] = spec.bool ? input.checked : Number(input.value);
  }
  return out;
}

// Knob -> sound, on every turn (each input event of a knob, the switch and the new-path button): the message
// carries a turn number; the engine answers with the number of the first block made with it ("applied"); the turn
// is heard when that block arrives, after what the player holds ahead of it, after the output's own latency.
function sendTurn(message, what) {
  const live = state.live;
  if (!live || live.ws.readyState !== 1) return;
  const id = ++live.turns;
  live.pending.set(id, { t0: performance.now(), what, seq: null });
  if (live.pending.size > 200) live.pending.delete(live.pending.keys().next().value);  // never answered: forgotten
  live.ws.send(JSON.stringify(Object.assign({ id }, message)));
}

function sendControl(name, value) {
  if (state.live && state.live.ws.readyState === 1) sendTurn({ set: { [name]: value } }, (KNOBS[name] || { label: name }).label);
  else if (state.midi && state.midi.connected) midiKnobs({ [name]: value });
}

// ---------------------------------------------------------------- a MIDI controller
// The studio holds the controller (the Pi's own MIDI code over the same ALSA sequencer): the page asks for what
// changed (a long poll), shows the controller and what each of its knobs drives, and arms Learn; a MIDI knob turned
// moves the live sound on the studio's side and its knob here. The page's own knob turns are told to the studio
// (over the live socket while playing, else here) so a MIDI knob picks up from what the page shows.
const MIDI_TARGET_WORDS = (name) => name === "reseed" ? "take a new random path" : (KNOBS[name] || { label: name.replace(/_/g, " ") }).label;

function midiKnobs(values) {
  api("/api/midi/controls", { method: "POST", json: { set: values } }).catch((e) => say(String(e.message || e)));
}

async function pollMidi() {
  let after = -1;
  for (;;) {
    try {
      const m = await api(`/api/midi?after=${after}&wait=20`);
      after = m.version;
      renderMidi(m, true);
    } catch (e) {
      $("#midi-status").textContent = "The studio does not answer (stopped?); looking again in 2 seconds.";
      await new Promise((resolve) => setTimeout(resolve, 2000));  // a retry pace, not a synchronisation
    }
  }
}

async function learnMidi(name) {
  const stop = state.midi && state.midi.learning === name;
  try {
    renderMidi(await api("/api/midi/learn", { method: "POST", json: { target: stop ? null : name } }), false);
  } catch (e) {
    const box = $("#midi-learn");
    box.textContent = String(e.message || e); box.className = "error";
  }
}

function midiWords(m) {
  const what = m.kind === "cc" ? `CC ${m.number}` : `pad (note ${m.number})`;
  return `${MIDI_TARGET_WORDS(m.control)} ← ${what}${m.source ? ` on ${m.source}` : ""}`;
}

function renderMidi(m, fromPoll) {
  const was = state.midi;
  state.midi = m;
  const panel = $("#midi");
  panel.dataset.connected = m.connected ? "1" : "";
  panel.dataset.learning = m.learning || "";
  if (m.connected) {
    $("#midi-status").textContent = `MIDI controller: ${m.port}. Press Learn beside a knob, then turn a knob or ` +
      "fader on the controller (for the new-path button or freeze: hit a pad); from then on it turns that knob here.";
  } else {
    const why = m.problems.join(" ");
    const fix = /not installed/.test(why) ? " The MIDI packages are missing: pip install mido python-rtmidi (make studio has them)." : "";
    $("#midi-status").textContent = `No MIDI controller${m.wanted ? ` named like “${m.wanted}”` : ""} is plugged in. ` +
      "Plug a USB MIDI controller (knobs, faders, pads; any class-compliant one) into this computer: it shows here " +
      `within a second, and each knob gets a Learn button.${fix}${why ? ` (This computer says: ${why.replace(/^MIDI: /, "")})` : ""}`;
  }
  if (m.connected && !(was && was.connected)) midiKnobs(knobValues());  // the controller picks up from the page
  for (const button of document.querySelectorAll("#knobs .learn")) {
    const name = button.id.slice("learn-".length);
    button.hidden = !m.connected;
    const on = m.learning === name;
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.querySelector(".what").textContent = on ? "Cancel" : "Learn";
  }
  const learnBox = $("#midi-learn");
  learnBox.className = "";
  if (m.learning) {
    const thing = m.learning === "reseed" ? "hit a pad" : m.learning === "hold" ? "hit a pad, or turn a knob" : "turn a knob or fader";
    learnBox.textContent = `Learning ${MIDI_TARGET_WORDS(m.learning)}: now ${thing} on ${m.port || "the controller"} (Cancel stops waiting).`;
  } else if (m.last && m.last.error) {
    learnBox.textContent = m.last.error; learnBox.className = "error";
  } else if (m.last && m.last.mapping) {
    learnBox.textContent = `Mapped: ${midiWords(m.last.mapping)}.`;
  } else learnBox.textContent = "";
  const list = $("#midi-mappings");
  list.innerHTML = "";
  for (const map of m.mappings) {
    const li = document.createElement("li");
    li.textContent = midiWords(map); li.dataset.control = map.control;
    list.appendChild(li);
  }
  for (const span of document.querySelectorAll("#knobs .midi-map")) {
    const name = span.id.slice("midi-map-".length);
    const maps = m.mappings.filter((x) => x.control === name);
    span.textContent = maps.length ? `MIDI: ${maps.map((x) => (x.kind === "cc" ? `CC ${x.number}` : `pad ${x.number}`)).join(", ")}` : "";
  }
  const hosts = state.midiHosts || [];
  $("#midi-file").textContent = !m.config_exists ? (m.connected ? `What you learn is written into ${m.config}, the Pi's config file with your mappings.` : "")
    : `Your mappings are in ${m.config}, a whole Pi config file. ` + (hosts.length
      ? `The Pis whose inventory entry names it get it with every deploy: ${hosts.join(", ")}.`
      : `To take them to the gallery: make deploy PI=<your Pi> CONFIG=${m.config} — or set config = "${m.config}" for ` +
        "your Pis in the deploy inventory (deploy/inventory.toml) and every deploy installs it on them.");
  const problem = $("#midi-problem");
  problem.textContent = m.config_problem || ""; problem.hidden = !m.config_problem;
  if (fromPoll) {
    for (const [name, value] of Object.entries(m.moved || {})) {
      const input = $(`#knob-${name}`);
      if (!input) continue;
      // when each MIDI move reached the page, epoch ms (the browser test times CC -> knob with it)
      if (window.studioMidiMoves.length < 1000) window.studioMidiMoves.push({ name, value, t: performance.timeOrigin + performance.now() });
      if (input.type === "checkbox") { input.checked = Boolean(value); continue; }
      input.value = value;
      const text = knobText(name, value);
      const out = $(`#value-${name}`);
      if (out) out.textContent = text;
      input.setAttribute("aria-valuetext", text);
    }
  }
}

function turnHeard(live, seq) {
  for (const [id, turn] of live.pending) {
    if (turn.seq === null || seq < turn.seq) continue;
    live.pending.delete(id);
    const ctx = live.ctx;
    const ms = performance.now() - turn.t0 + 1000 * (live.buffered + (ctx ? (ctx.outputLatency || ctx.baseLatency || 0) : 0));
    live.latencies.push(ms); live.turnsHeard.push({ id, what: turn.what, ms, seq: turn.seq });
    if (live.latencies.length > 500) { live.latencies.shift(); live.turnsHeard.shift(); }
    $("#latency").textContent = Math.round(ms);
    $("#latency-which").textContent = ` (the last turn: ${turn.what})`;
    $("#latencies").textContent = live.latencies.slice(-12).map(Math.round).join(", ");
  }
}

async function startLive() {
  stopLive();
  const run = $("#live-run").value;
  if (!run) { say("train a run first: there is nothing to play"); return; }
  const controls = encodeURIComponent(JSON.stringify(knobValues()));
  const ws = new WebSocket(`ws://${location.host}/api/live?run=${encodeURIComponent(run)}&token=${encodeURIComponent(TOKEN)}&controls=${controls}`);
  ws.binaryType = "arraybuffer";
  const live = { ws, run, ctx: null, node: null, analyser: null, rms: 0, underruns: 0, underrunTimes: [], received: 0,
                 buffered: 0, turns: 0, pending: new Map(), latencies: [], turnsHeard: [], levels: [] };
  state.live = live;
  window.studioLive = live;  // for the browser test and the benchmark: underruns (and when), latencies, blocks
  $("#live-start").disabled = true; $("#live-stop").disabled = false;
  $("#live-status").textContent = `connecting to ${run} …`;
  ws.onmessage = async (e) => {
    if (typeof e.data === "string") {
      const m = JSON.parse(e.data);
      if (m.hello) await openAudio(live, m.hello);
      else if (m.error) { say(m.error); $("#live-status").textContent = "error"; }
      else if (m.stats) live.server = m.stats;
      else if (m.applied && live.pending.has(m.applied.id)) live.pending.get(m.applied.id).seq = m.applied.seq;
      return;
    }
    const seq = new DataView(e.data).getUint32(0, true);
    const pcm = new Int16Array(e.data, 4);
    const f = new Float32Array(pcm.length);
    let sum = 0;
    for (let i = 0; i < pcm.length; i++) { f[i] = pcm[i] / 32768; sum += f[i] * f[i]; }
    const blockRms = Math.sqrt(sum / pcm.length);
    live.rms = 0.8 * live.rms + 0.2 * blockRms;
    live.received++;
    live.levels.push([seq, blockRms]);  // the last blocks' levels, by number (the browser test checks "applied" by them)
    if (live.levels.length > 400) live.levels.shift();
    if (live.pending.size) turnHeard(live, seq);
    if (live.node) live.node.port.postMessage({ pcm: f }, [f.buffer]);
  };
  ws.onclose = () => { if (state.live === live) { $("#live-status").textContent = "stopped"; $("#live-start").disabled = false; $("#live-stop").disabled = true; } };
}

async function openAudio(live, hello) {
  const ctx = new AudioContext({ sampleRate: hello.sample_rate_hz, latencyHint: "interactive" });
  await ctx.audioWorklet.addModule("/static/worklet.js");
  const node = new AudioWorkletNode(ctx, "stream-player", {
    numberOfInputs: 0, outputChannelCount: [1],
    processorOptions: { target: Math.round(PLAYER_TARGET_S * hello.sample_rate_hz), max: Math.round(PLAYER_MAX_S * hello.sample_rate_hz),
                        block: hello.block_frames } });
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  node.connect(analyser); analyser.connect(ctx.destination);
  node.port.onmessage = (e) => {
    const d = e.data;
    if (d.underruns !== undefined) {
      if (d.underruns > live.underruns && live.underrunTimes.length < 1000) {
        live.underrunTimes.push(performance.timeOrigin + performance.now());  // when the page heard of it, epoch ms
      }
      $("#underruns").textContent = d.underruns; $("#buffered").textContent = Math.round(1000 * d.buffered);
      Object.assign(live, { underruns: d.underruns, buffered: d.buffered, droppedSamples: d.dropped, target: d.target });
    }
  };
  await ctx.resume();
  Object.assign(live, { ctx, node, analyser });
  $("#live-status").textContent = `playing ${live.run}`;
  $("#live-status").dataset.playing = "1";
  drawLive(live);
}

function drawLive(live) {
  // scrolls the canvas one pixel per animation frame and paints the newest column: no read-back and no per-frame
  // allocation on the page's main thread, which also hands the stream's blocks to the player
  const c = $("#live-spec"), g = c.getContext("2d");
  const bins = new Uint8Array(live.analyser.frequencyBinCount);
  const column = g.createImageData(1, c.height), px = column.data;
  const rows = Array.from({ length: c.height }, (_, y) => Math.min(bins.length - 1, Math.floor(Math.pow(bins.length, 1 - y / c.height))));
  const step = () => {
    if (state.live !== live) return;
    live.analyser.getByteFrequencyData(bins);
    g.drawImage(c, -1, 0);
    for (let y = 0; y < c.height; y++) {
      const v = bins[rows[y]];
      px[4 * y] = v; px[4 * y + 1] = Math.round(v * 0.6); px[4 * y + 2] = 255 - Math.round(v * 0.7); px[4 * y + 3] = 255;
    }
    g.putImageData(column, c.width - 1, 0);
    $("#live-level").textContent = live.rms > 0 ? (20 * Math.log10(live.rms)).toFixed(1) : "-inf";
    requestAnimationFrame(step);
  };
  requestAnimationFrame(step);
}

function stopLive() {
  const live = state.live;
  state.live = null;
  if (!live) return;
  live.ws.close();
  if (live.ctx) live.ctx.close();
  $("#live-status").textContent = "stopped"; $("#live-status").dataset.playing = "";
  $("#live-start").disabled = false; $("#live-stop").disabled = true;
}

// ---------------------------------------------------------------- compare
function renderRuns() {
  // rebuilt only when a run or a recording came or went: an open "exact numbers", the focus and a chosen run stay
  // put while the page polls during a training
  const signature = JSON.stringify([state.runs, state.recordings.map((r) => r.name)]);
  if (signature === renderRuns.shown) return;
  renderRuns.shown = signature;
  const body = $("#runs tbody");
  const selected = { A: $('input[name="run-a"]:checked'), B: $('input[name="run-b"]:checked') };
  const keepA = selected.A && selected.A.value, keepB = selected.B && selected.B.value;
  body.innerHTML = "";
  $("#runs-empty").hidden = state.runs.length > 0;
  for (const id of ["#listen-empty", "#gallery-empty"]) $(id).hidden = state.runs.length > 0;
  $("#runs").hidden = !state.runs.length;
  for (const run of state.runs.slice().reverse()) {
    const tr = document.createElement("tr");
    tr.dataset.run = run.id;
    const took = run.run_seconds ?? run.train_seconds;
    tr.innerHTML = `<td><input type="radio" name="run-a" value="${run.id}" aria-label="play ${run.id} as A"></td>
      <td><input type="radio" name="run-b" value="${run.id}" aria-label="play ${run.id} as B"></td>
      <td><b>${run.id}</b><br><span class="muted made"></span></td>
      <td class="sound"><ul class="words"></ul><details><summary>exact numbers</summary><pre class="numbers" tabindex="0"></pre>
        ${run.picture ? `<a target="_blank" href="/api/runs/${run.id}/${run.picture}?token=${TOKEN}">the trainer's picture of ${run.id}</a>` : ""}</details></td>
      <td class="thumbs"><figure><canvas class="thumb source" width="240" height="60" role="img"></canvas><figcaption>your recording</figcaption></figure>
        <figure><canvas class="thumb preview" width="240" height="60" role="img"></canvas><figcaption>its preview</figcaption></figure></td>`;
    const parts = run.selection.map((s) => `${s.recording} ${stamp(s.start_s)} to ${stamp(s.end_s)}`).join(", ");
    tr.querySelector(".made").textContent = `learned from ${stamp(run.material_seconds)} of material (${parts}) in `
      + `${took != null ? clock(took) : "–"}`;
    const list = tr.querySelector(".words");
    for (const sentence of runWords(run)) { const li = document.createElement("li"); li.textContent = sentence; list.appendChild(li); }
    tr.querySelector(".numbers").textContent = runNumbers(run);
    body.appendChild(tr);
    drawThumbs(tr, run);
  }
  const pick = (name, value, fallback) => {
    const input = (value && $(`input[name="${name}"][value="${value}"]`)) || $(`input[name="${name}"]${fallback}`);
    if (input) input.checked = true;
  };
  pick("run-a", keepA, ":nth-of-type(1)");
  // B: the one kept, unless it is A while another run exists (a new run arrived): then the newest other run
  const chosenA = $('input[name="run-a"]:checked');
  const radiosB = [...document.querySelectorAll('input[name="run-b"]')];
  const otherB = radiosB.find((r) => !chosenA || r.value !== chosenA.value);
  if (keepB && $(`input[name="run-b"][value="${keepB}"]`) && !(chosenA && keepB === chosenA.value && otherB)) {
    $(`input[name="run-b"][value="${keepB}"]`).checked = true;
  } else if (otherB || radiosB.length) (otherB || radiosB[0]).checked = true;
  for (const id of ["#live-run", "#deploy-run"]) {
    const sel = $(id), keep = sel.value;
    sel.innerHTML = state.runs.slice().reverse().map((r) => `<option value="${r.id}">${r.id}</option>`).join("");
    if (keep && state.runs.some((r) => r.id === keep)) sel.value = keep;
  }
}

// The trainer's sound check (trainer/soundcheck.py summary_lines) and held-out figures, read back as sentences. The
// thresholds: "yes" when the preview is at most as far from the recording (Fréchet distance) as the recording's two
// halves are from each other, "nearly" up to 1.5 times that; replay under 20 % as the sound check wants; movement
// and level "about the same" within x0.67-1.5 and 3 dB.
function parseFigures(lines) {
  const text = (lines || []).join("\n"), num = (re) => { const m = text.match(re); return m ? m.slice(1).map(Number) : null; };
  const n = "(-?[\\d.]+|-?inf|nan)";
  return {
    fd: num(new RegExp(`1\\.5 s: ${n} / ${n} / ${n}`)),
    own: num(new RegExp(`own halves ${n} / ${n} / ${n}`)),
    granular: num(new RegExp(`granular player ${n} / ${n} / ${n}`)),
    replay: num(/phrase replay (\d+) %/), movement: num(/movement x([\d.]+)/), stuck: num(/static seconds (\d+) %/),
    silent: num(/dead air (\d+) % of seconds \(source (\d+) %\)/),
    level: num(new RegExp(`level ${n} dBFS \\(source ${n} dBFS\\)`)),
  };
}

function closeness(fd, own) {
  const r = fd / own;
  return !Number.isFinite(r) ? null : r <= 1 ? "yes" : r <= 1.5 ? "nearly" : `no (${fmt(r, 1)} times as far)`;
}

function runWords(run) {
  const out = [];
  // what the model learned: its preview against the same player without it (trainer/preview.py learned_sentence)
  if (run.learned && run.learned.words) out.push(run.learned.words);
  if (run.val_lsd_db != null && run.baseline_lsd_db != null) {
    out.push(`On the part kept aside, it guesses the next moment better than just holding the last one: ${run.val_lsd_db < run.baseline_lsd_db ? "yes" : "no"}.`);
  }
  const f = parseFigures(run.figures);
  if (f.fd && f.own) {
    const colour = closeness(f.fd[1], f.own[1]), phrases = closeness(f.fd[2], f.own[2]);
    if (colour) out.push(`Its sound is as close to your recording as the recording's second half is to its first: ${colour}.`);
    if (phrases) out.push(`Its phrases (1.5-second stretches) too: ${phrases}.`);
  }
  if (f.fd && f.granular) {
    const better = f.fd[1] < f.granular[1] && f.fd[2] < f.granular[2];
    out.push(`Closer to your recording than short pieces of it played in a random order: ${better ? "yes" : "no"}.`);
  }
  if (f.replay) out.push(`Copies your recording note for note ${f.replay[0]} % of the time (${f.replay[0] <= 20 ? "fine: under 20 %" : "too often: over 20 %"}).`);
  if (f.movement) {
    const m = f.movement[0];
    out.push(m < 0.67 ? "It changes less than your recording does: calmer." : m > 1.5 ? "It changes more than your recording does: busier."
      : "It changes about as much as your recording does.");
  }
  if (f.silent) out.push(`Silent ${f.silent[0]} % of its seconds (your recording: ${f.silent[1]} %).`);
  if (f.level && f.level.every(Number.isFinite)) {
    const d = f.level[0] - f.level[1];
    out.push(Math.abs(d) <= 3 ? "As loud as your recording." : `${fmt(Math.abs(d), 0)} dB ${d < 0 ? "quieter" : "louder"} than your recording.`);
  }
  const skipped = (run.figures || []).find((l) => /sound check skipped/.test(l));
  if (skipped) out.push(`No sound check: ${plainPaths(skipped.replace(/^.*skipped:\s*/, ""))}.`);
  if (!out.length) out.push("No preview was made for this run, so there is nothing to compare yet.");
  return out;
}

function runNumbers(run) {
  const lines = [];
  if (run.val_lsd_db != null) {
    lines.push(`held-out next-frame LSD ${fmt(run.val_lsd_db, 2)} dB (repeat-the-last-frame baseline ${fmt(run.baseline_lsd_db, 2)} dB)`);
  }
  if (run.advanced) lines.push(`trainer options: ${run.advanced}`);
  lines.push(`${run.epochs ?? "–"} epochs${run.stop_reason ? `, ${run.stop_reason}` : ""}; budget ${run.minutes} min; run ${run.run_seconds ?? "–"} s`);
  if (run.bundle_id) lines.push(`bundle ${run.bundle_id}, ${fmt((run.bundle_bytes || 0) / 1e6, 2)} MB`);
  return lines.concat((run.figures || []).map(plainPaths)).join("\n");
}

// ---------------------------------------------------------------- thumbnails: source and preview, the same picture
// Both analysed here the same way as the recordings' overviews (studio/project.py make_overview: 1024-sample Hann
// frames, log-spaced bands from 40 Hz, dB over 80 dB from the loudest): the preview, and as many seconds of the
// run's first chosen part of your recording, so the two pictures compare.
const thumbCache = {};

function fft(re, im) {  // in place, radix 2
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) { [re[i], re[j]] = [re[j], re[i]]; [im[i], im[j]] = [im[j], im[i]]; }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const a = -2 * Math.PI / len, wr = Math.cos(a), wi = Math.sin(a);
    for (let i = 0; i < n; i += len) {
      let cr = 1, ci = 0;
      for (let k = 0; k < len / 2; k++) {
        const p = i + k, q = p + len / 2, tr = re[q] * cr - im[q] * ci, ti = re[q] * ci + im[q] * cr;
        re[q] = re[p] - tr; im[q] = im[p] - ti; re[p] += tr; im[p] += ti;
        [cr, ci] = [cr * wr - ci * wi, cr * wi + ci * wr];
      }
    }
  }
}

function spectrogram(samples, rate, columns, bands) {
  const N = 1024, out = new Float32Array(columns * bands), re = new Float32Array(N), im = new Float32Array(N);
  const edges = Array.from({ length: bands + 1 }, (_, b) => 40 * Math.pow(rate / 2 / 40, b / bands));
  const binOf = (f) => Math.floor(f * N / rate);
  for (let c = 0; c < columns; c++) {
    const start = Math.floor(c * Math.max(0, samples.length - N) / Math.max(1, columns - 1));
    for (let i = 0; i < N; i++) { re[i] = (samples[start + i] || 0) * (0.5 - 0.5 * Math.cos(2 * Math.PI * i / (N - 1))); im[i] = 0; }
    fft(re, im);
    for (let b = 0; b < bands; b++) {
      let m = 0;
      for (let k = Math.max(1, binOf(edges[b])); k < Math.min(N / 2, Math.max(binOf(edges[b]) + 1, binOf(edges[b + 1]))); k++) m = Math.max(m, Math.hypot(re[k], im[k]));
      out[c * bands + b] = 20 * Math.log10(Math.max(m, 1e-9));
    }
  }
  const top = out.reduce((a, b) => Math.max(a, b), -Infinity);
  return out.map((v) => Math.max(0, Math.min(255, (v - (top - 80)) / 80 * 255)));
}

async function decodeUrl(url) {
  const data = await (await fetch(url, { headers: { "X-Studio-Token": TOKEN } })).arrayBuffer();
  const audio = await new OfflineAudioContext(1, 1, 44100).decodeAudioData(data);
  return { samples: audio.getChannelData(0), rate: audio.sampleRate };
}

function paintThumb(canvas, spec, columns, bands) {
  const g = canvas.getContext("2d"), W = canvas.width, H = canvas.height, img = g.createImageData(W, H);
  for (let x = 0; x < W; x++) {
    const col = Math.min(columns - 1, Math.floor(x * columns / W));
    for (let y = 0; y < H; y++) {
      const v = spec[col * bands + Math.min(bands - 1, Math.floor((H - 1 - y) * bands / H))], i = (y * W + x) * 4;
      img.data[i] = v; img.data[i + 1] = v * 0.6; img.data[i + 2] = 255 - v * 0.7; img.data[i + 3] = 255;
    }
  }
  g.putImageData(img, 0, 0);
}

async function drawThumbs(tr, run) {
  const source = tr.querySelector(".thumb.source"), preview = tr.querySelector(".thumb.preview");
  const part = run.selection[0];
  source.setAttribute("aria-label", part ? `picture of your recording ${part.recording} from ${stamp(part.start_s)}: its pitches over time` : "no recording");
  preview.setAttribute("aria-label", `picture of the preview of ${run.id}: its pitches over time`);
  if (!run.preview) { preview.nextElementSibling.textContent = "no preview was made"; return; }
  try {
    const key = run.id;
    if (!thumbCache[key]) {
      thumbCache[key] = (async () => {
        const p = await decodeUrl(`/api/runs/${run.id}/${run.preview}`);
        const result = { preview: spectrogram(p.samples, p.rate, 120, 40), source: null };
        if (part && state.recordings.some((r) => r.name === part.recording)) {
          const r = await decodeUrl(`/api/recordings/${encodeURIComponent(part.recording)}/audio`);
          const a = Math.floor(part.start_s * r.rate), b = Math.min(Math.floor(part.end_s * r.rate), a + Math.round(p.samples.length / p.rate * r.rate));
          result.source = spectrogram(r.samples.subarray(a, b), r.rate, 120, 40);
        }
        return result;
      })();
    }
    const pictures = await thumbCache[key];
    paintThumb(preview, pictures.preview, 120, 40);
    if (pictures.source) paintThumb(source, pictures.source, 120, 40);
    else source.nextElementSibling.textContent = "your recording (no longer in the material)";
    tr.dataset.thumbs = pictures.source ? "2" : "1";
  } catch (e) { preview.nextElementSibling.textContent = `no picture: ${e.message || e}`; }
}

function abSource(which) {
  const input = $(`input[name="run-${which.toLowerCase()}"]:checked`);
  return input ? `/api/runs/${input.value}/bundle-preview.wav?token=${TOKEN}` : null;
}

async function playAB() {
  const a = $("#audio-a"), b = $("#audio-b");
  const srcA = abSource("A"), srcB = abSource("B");
  if (!srcA || !srcB) { say("choose two runs (A and B) to compare"); return; }
  if (!a.src.endsWith(srcA)) a.src = srcA;
  if (!b.src.endsWith(srcB)) b.src = srcB;
  state.ab = "A";
  b.muted = true; a.muted = false;
  await Promise.all([a.play(), b.play()]);
  $("#ab-now").textContent = `playing A (${$('input[name="run-a"]:checked').value})`;
}

function toggleAB() {
  const a = $("#audio-a"), b = $("#audio-b");
  state.ab = state.ab === "A" ? "B" : "A";
  a.muted = state.ab !== "A"; b.muted = state.ab !== "B";
  b.currentTime = a.currentTime;
  $("#ab-now").textContent = `playing ${state.ab} (${$(`input[name="run-${state.ab.toLowerCase()}"]:checked`).value})`;
}

// ---------------------------------------------------------------- gallery
async function deploy() {
  try {
    await api("/api/deploy", { method: "POST", json: { run: $("#deploy-run").value, hosts: $("#deploy-hosts").value } });
    pollDeploy();
  } catch (e) { say(String(e.message || e)); }
}

let deployTimer = null;
async function pollDeploy() {
  clearTimeout(deployTimer);
  const d = await api("/api/deploy");
  if (!d) return;
  $("#deploy-log").textContent = d.lines.join("\n");
  const body = $("#deploy-summary tbody");
  body.innerHTML = "";
  for (const row of d.summary) {
    const tr = document.createElement("tr");
    tr.dataset.host = row.host;
    tr.innerHTML = `<td>${row.host}</td><td class="${row.ok ? "ok" : "failed"}">${row.ok ? "OK" : "FAILED"}</td><td></td>`;
    tr.lastChild.textContent = row.text;
    body.appendChild(tr);
  }
  if (!d.running && !d.ok && !d.summary.length) {  // the tool stopped before any host: its own words
    say(`deploy failed (exit ${d.code}):\n${d.lines.slice(-6).join("\n")}`);
  }
  if (d.running) {
    const last = d.lines.filter((l) => l.trim()).slice(-1)[0] || "";
    const tr = document.createElement("tr");
    tr.innerHTML = `<td colspan="3" class="muted"></td>`;
    tr.firstChild.textContent = `deploying … ${last}`;
    body.appendChild(tr);
    deployTimer = setTimeout(pollDeploy, 500);
  }
}

// a Pi's health in words, the figure after it (device/appliance/health.py: the firmware's throttle bits, the clock)
const CLOCK_WORDS = { synchronised: "set from the network", unsynchronised: "not set yet: no network time", unknown: "cannot tell" };
function levelWords(level) {
  const v = Number(level);
  return Number.isFinite(v) ? `${v > -60 ? "sounding" : "silent"} (${v.toFixed(1)} dB)` : "no sound reported";
}
function tempWords(temp) {
  const v = Number(temp);
  return Number.isFinite(v) ? `${v < 70 ? "fine" : v < 80 ? "warm" : "too hot: it slows down"} (${v.toFixed(0)} °C)` : "cannot tell";
}
function powerWords(word) {
  const bits = parseInt(word, 16);
  if (!Number.isFinite(bits)) return "cannot tell";
  if (bits === 0) return "fine";
  if (bits & (0x1 | 0x10000)) return `the power supply is too weak (${word}): use the official Pi supply`;
  return `it got too hot and slowed down (${word})`;
}

async function fleetStatus() {
  const body = $("#fleet tbody");
  body.innerHTML = `<tr><td colspan="7" class="muted">asking the Pis …</td></tr>`;
  try {
    const d = await api("/api/status", { method: "POST", json: { hosts: $("#deploy-hosts").value } });
    body.innerHTML = "";
    for (const row of d.summary) {
      const tr = document.createElement("tr");
      tr.dataset.host = row.host;
      const cells = row.state ? [row.host, row.state, row.bundle, levelWords(row.level), tempWords(row.temp),
                                 CLOCK_WORDS[row.clock] || row.clock, powerWords(row.throttled)]
                              : [row.host, row.ok ? "OK" : "FAILED", row.text, "", "", "", ""];
      for (const text of cells) { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); }
      body.appendChild(tr);
    }
  } catch (e) { body.innerHTML = ""; say(String(e.message || e)); }
}

// ---------------------------------------------------------------- state
function applyState(s) {
  state.recordings = s.recordings; state.runs = s.runs; state.controls = s.controls; state.midiHosts = s.midi_hosts;
  $("#project").textContent = `project folder: ${String(s.project).split(/[\\/]/).filter(Boolean).pop() || s.project}`;
  $("#project").title = s.project;
  if (s.settings && s.settings.minutes && !applyState.done) {
    $("#minutes").value = s.settings.minutes; $("#advanced").value = s.settings.advanced || "";
  }
  applyState.done = true;
  renderRecordings(); renderTraining(s.train); renderKnobs(); renderRuns();
  const names = ["all", ...(s.fleet.groups || []), ...(s.fleet.hosts || [])];
  $("#fleet-names").innerHTML = names.map((n) => `<option value="${n}">`).join("");
}

async function refresh() {
  try { applyState(await api("/api/state")); } catch (e) { say(String(e.message || e)); }
}

window.addEventListener("DOMContentLoaded", async () => {
  setupDrop();
  $("#rec-start").onclick = startRecording; $("#rec-stop").onclick = stopRecording;
  $("#rec-keep").onclick = keepTake; $("#rec-discard").onclick = () => discardTake();
  recorderButtons();
  $("#train").onclick = startTraining;
  $("#cancel").onclick = async () => { try { await api("/api/train/cancel", { method: "POST" }); } catch (e) { say(String(e)); } pollTraining(); };
  $("#live-start").onclick = startLive;
  $("#live-stop").onclick = stopLive;
  $("#ab-play").onclick = playAB;
  $("#ab-toggle").onclick = toggleAB;
  $("#ab-stop").onclick = () => { $("#audio-a").pause(); $("#audio-b").pause(); $("#ab-now").textContent = ""; };
  $("#deploy-go").onclick = deploy;
  $("#fleet-refresh").onclick = fleetStatus;
  await refresh();
  pollTraining();
  pollDeploy();
  pollMidi();
  document.body.dataset.ready = "1";
});
