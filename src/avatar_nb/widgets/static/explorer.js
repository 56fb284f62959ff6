// Front end of avatar_nb.explore (an anywidget ES module, shipped in the package: no CDN).
//
// One canvas draws every track of one or two runs on a shared axis of media time. The
// kernel answers tiles: tile (z, i) covers [i * D, (i + 1) * D) s with D = tile_seconds *
// 2^z, drawn tile_columns wide, each track at most a min and a max per column, as binary
// buffers (float32 little-endian; the heatmap as bytes). The view reads the level whose
// columns are at least a pixel wide, keeps every tile it received (up to a bound),
// draws a missing tile from a coarser one it holds until the right one arrives, and
// prefetches the neighbours of the view (left, right, one level up and one down) when
// idle, so that most pans and zooms redraw without a kernel round trip.
//
// Measurement: every interaction (wheel, drag, click, key) is timed from its input
// event (event.timeStamp) to the animation frame that shows it drawn with all the tiles
// it needs (performance.now() in that frame's callback, after the drawing), kernel round
// trip included when there was one. window.__avatarNbExplorer lists each explorer's record
// ({stats: [{kind, ms, roundTrip, bytes}], firstPaint, ...}) for scripted checks.

const LEFT = 92;   // label gutter (px)
const RIGHT = 10;
const AXIS = 24;
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
const RUN_COLORS = ["#1f77b4", "#ff7f0e"];
const STATUS_COLORS = ["#4c9a6a", "#9a9a9a", "#e08a2c", "#b370c9", "#d33b3b", "#555555"];
const HEIGHTS = { audio: 64, lines: 50, head: 58, heat: 64, spans: 12, points: 14 };
const MAX_TILES = 900;

// RdBu_r, sampled: byte 1..255 is the mean from -limit to +limit, 0 is "no data"
function buildLut() {
  const stops = [[5, 48, 97], [67, 147, 195], [209, 229, 240], [247, 247, 247], [253, 219, 199], [214, 96, 77], [103, 0, 31]];
  const lut = new Uint8ClampedArray(256 * 4);
  for (let q = 1; q < 256; q++) {
    const x = ((q - 1) / 254) * (stops.length - 1);
    const k = Math.min(stops.length - 2, Math.floor(x));
    const f = x - k;
    for (let c = 0; c < 3; c++) lut[q * 4 + c] = stops[k][c] + (stops[k + 1][c] - stops[k][c]) * f;
    lut[q * 4 + 3] = 255;
  }
  return lut;  // q = 0 stays transparent
}
const LUT = buildLut();

function aligned(dv) {
  // a DataView (or ArrayBuffer) from the widget message, copied so that it starts aligned
  return dv.buffer ? dv.buffer.slice(dv.byteOffset, dv.byteOffset + dv.byteLength) : dv.slice(0);
}
function floats(dv) { return new Float32Array(aligned(dv)); }
function bytes(dv) {
  return dv.buffer ? new Uint8Array(dv.buffer, dv.byteOffset, dv.byteLength) : new Uint8Array(dv);
}
function byteLength(dv) { return dv.byteLength || 0; }

function niceStep(span, target) {
  const raw = span / Math.max(1, target);
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}
function timeText(t, step) {
  const digits = step >= 1 ? 0 : Math.min(4, Math.ceil(-Math.log10(step)));
  if (t >= 60 && step >= 1) {
    const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), s = Math.round(t % 60);
    const mm = String(m).padStart(h ? 2 : 1, "0"), ss = String(s).padStart(2, "0");
    return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
  }
  return t.toFixed(digits) + " s";
}

function render({ model, el }) {
  const spec = model.get("spec");
  const runs = spec.runs;
  const R = runs.length;
  const D0 = spec.tile_seconds;
  const zMax = spec.z_max;
  const duration = spec.duration;
  const record = { stats: [], rtts: [], rttsBy: {}, draws: [], firstPaint: null, superseded: 0, requests: 0, bytes: 0, tiles: 0, view: null, cursor: null };
  (window.__avatarNbExplorer = window.__avatarNbExplorer || []).push(record);

  // ---------------------------------------------------------------- DOM
  el.classList.add("avatar-nb-explorer");
  const bar = document.createElement("div");
  bar.className = "avatar-nb-explorer-bar";
  const btn = (text, title) => {
    const b = document.createElement("button");
    b.textContent = text;
    b.title = title;
    bar.appendChild(b);
    return b;
  };
  const playBtn = btn("▶ play", "play the audio from the cursor (space)");
  const allBtn = btn("0  all", "show the whole run (0)");
  const inBtn = btn("+", "zoom in (+)");
  const outBtn = btn("−", "zoom out (-)");
  const info = document.createElement("span");
  info.className = "avatar-nb-explorer-info";
  bar.appendChild(info);
  const body = document.createElement("div");
  body.className = "avatar-nb-explorer-body";
  const stage = document.createElement("div");
  stage.className = "avatar-nb-explorer-stage";
  stage.tabIndex = 0;
  const canvas = document.createElement("canvas");
  stage.appendChild(canvas);
  const side = document.createElement("div");
  side.className = "avatar-nb-explorer-side";
  side.innerHTML = `<div class="avatar-nb-explorer-hint">click a track to place the cursor</div>`;
  body.append(stage, side);
  el.append(bar, body);
  const ctx = canvas.getContext("2d");

  // ---------------------------------------------------------------- layout
  const rows = [];
  {
    let y = 4;
    for (const track of spec.tracks) {
      const perRun = track.kind === "heat" || track.kind === "spans" || track.kind === "points";
      const kinds = perRun ? runs.map((_, r) => r) : [null];
      for (const r of kinds) {
        if (track.kind === "audio" && !runs.some((run) => run.has_audio)) continue;
        if (track.kind === "heat" && !runs[r].n_expression) continue;
        const h = track.name === "head" ? HEIGHTS.head : HEIGHTS[track.kind] || HEIGHTS.lines;
        const label = perRun && R > 1 ? `${track.label} ${runs[r].label}` : track.label;
        rows.push({ track, run: r, y, h, label });
        y += h + (track.kind === "spans" || track.kind === "points" ? 3 : 6);
      }
    }
    rows.height = y + AXIS;
  }

  // ---------------------------------------------------------------- state
  const view = { t0: 0, t1: duration };
  let width = 800;
  let cursor = null;       // {t, index (run 0)}
  let cursorInfo = null;
  const tiles = new Map(); // "r:z:i" -> tile
  const inflight = new Set();
  const waiting = new Map(); // req -> resolve
  let reqId = 0;
  let pending = null;        // the interaction being timed
  let drawQueued = false;
  let playing = null;

  const key = (r, z, i) => `${r}:${z}:${i}`;
  const span = (z) => D0 * Math.pow(2, z);
  const plotW = () => Math.max(50, width - LEFT - RIGHT);
  const X = (t) => LEFT + ((t - view.t0) / (view.t1 - view.t0)) * plotW();
  const T = (x) => view.t0 + ((x - LEFT) / plotW()) * (view.t1 - view.t0);

  function levelFor() {
    // columns at least a pixel wide: D_z / columns >= seconds per pixel
    const perPixel = (view.t1 - view.t0) / plotW();
    const z = Math.ceil(Math.log2((perPixel * spec.tile_columns) / D0));
    return Math.max(0, Math.min(zMax, z));
  }
  function visible(z) {
    const d = span(z);
    const last = Math.max(0, Math.ceil(duration / d) - 1);
    const i0 = Math.max(0, Math.floor(view.t0 / d));
    const i1 = Math.min(last, Math.floor((view.t1 - 1e-9) / d));
    const out = [];
    for (let i = i0; i <= i1; i++) out.push(i);
    return out;
  }
  function needed() {
    const z = levelFor();
    const out = [];
    for (let r = 0; r < R; r++) for (const i of visible(z)) out.push([r, z, i]);
    return out;
  }

  // ---------------------------------------------------------------- kernel
  function ask(content, buffers) {
    const req = ++reqId;
    content.req = req;
    record.requests++;
    const sent = performance.now();
    const behind = waiting.size > 0;  // an earlier request not answered yet: this one waits for it
    return new Promise((resolve) => {
      waiting.set(req, (reply) => {
        const kind = content.type + (content.type === "cursor" && content.neighbours !== 0 ? "+" : "") +
          (behind ? " behind another" : "");
        (record.rttsBy[kind] = record.rttsBy[kind] || []).push(performance.now() - sent);
        record.rtts.push(performance.now() - sent);
        resolve(reply);
      });
      model.send(content, undefined, buffers || []);
    });
  }
  model.on("msg:custom", (msg, buffers) => {
    const resolve = waiting.get(msg.req);
    if (!resolve) return;
    waiting.delete(msg.req);
    const size = (buffers || []).reduce((a, b) => a + byteLength(b), 0) + JSON.stringify(msg).length;
    record.bytes += size;
    resolve({ msg, buffers: buffers || [], size });
  });

  function decodeTile(meta, buffers) {
    const tile = { t0: meta.t0, t1: meta.t1, z: meta.z, i: meta.i };
    for (const part of ["audio", "lines"]) {
      const m = meta[part];
      if (!m) continue;
      const mins = floats(buffers[m.min]);
      tile[part] = { t0: m.t0, dt: m.dt, raw: m.raw, n: m.n, mins, maxs: m.raw ? mins : floats(buffers[m.max]),
        means: m.mean === undefined ? null : floats(buffers[m.mean]) };
    }
    const h = meta.heat;
    if (h && h.n > 0) {
      const E = runs[meta.run].n_expression;
      const cells = bytes(buffers[h.buffer]);
      const img = new ImageData(h.n, E);
      for (let c = 0; c < h.n; c++) {
        for (let e = 0; e < E; e++) {
          const q = cells[c * E + e];
          const p = ((E - 1 - e) * h.n + c) * 4;
          img.data[p] = LUT[q * 4]; img.data[p + 1] = LUT[q * 4 + 1]; img.data[p + 2] = LUT[q * 4 + 2]; img.data[p + 3] = LUT[q * 4 + 3];
        }
      }
      const off = document.createElement("canvas");
      off.width = h.n; off.height = E;
      off.getContext("2d").putImageData(img, 0, 0);
      tile.heat = { t0: h.t0, dt: h.dt, n: h.n, canvas: off };
    }
    return tile;
  }

  async function fetchTiles(list, forInteraction) {
    const want = list.filter(([r, z, i]) => !tiles.has(key(r, z, i)) && !inflight.has(key(r, z, i)));
    if (!want.length) return;
    for (const [r, z, i] of want) inflight.add(key(r, z, i));
    const { msg, buffers, size } = await ask({ type: "tiles", tiles: want });
    for (const [r, z, i] of want) inflight.delete(key(r, z, i));
    for (const meta of msg.tiles) tiles.set(key(meta.run, meta.z, meta.i), decodeTile(meta, buffers));
    record.tiles = tiles.size;
    if (forInteraction && pending) pending.bytes += size;
    evict();
    schedule();
  }
  function evict() {
    if (tiles.size <= MAX_TILES) return;
    const keep = new Set(needed().map(([r, z, i]) => key(r, z, i)));
    for (const k of tiles.keys()) {
      if (tiles.size <= MAX_TILES * 0.8) break;
      if (!keep.has(k) && !k.endsWith(`:${zMax}:0`)) tiles.delete(k);
    }
  }
  function prefetch() {
    if (pending || inflight.size) return;
    const z = levelFor();
    const vis = visible(z);
    if (!vis.length) return;
    const list = [];
    const lastAt = (zz) => Math.max(0, Math.ceil(duration / span(zz)) - 1);
    for (let r = 0; r < R; r++) {
      const a = vis[0], b = vis[vis.length - 1];
      for (const i of [a - 1, b + 1, a - 2, b + 2]) if (i >= 0 && i <= lastAt(z)) list.push([r, z, i]);
      if (z + 1 <= zMax) {
        for (let i = Math.floor(a / 2) - 1; i <= Math.floor(b / 2) + 1; i++) if (i >= 0 && i <= lastAt(z + 1)) list.push([r, z + 1, i]);
      }
      if (z - 1 >= 0) {  // the view one level down: a zoom in anywhere in it is held
        const d = span(z - 1);
        for (let i = Math.floor(view.t0 / d); i <= Math.floor(view.t1 / d); i++) if (i >= 0 && i <= lastAt(z - 1)) list.push([r, z - 1, i]);
      }
    }
    const missing = list.filter(([r, zz, i]) => !tiles.has(key(r, zz, i)) && !inflight.has(key(r, zz, i)));
    // a few at a time: an interaction's own request waits behind one small batch at most
    if (missing.length) fetchTiles(missing.slice(0, 4), false);
  }

  // ---------------------------------------------------------------- interactions
  function begin(kind, ev) {
    if (pending) record.superseded++;
    const now = performance.now();
    pending = { kind, start: ev && ev.timeStamp ? ev.timeStamp : now, handled: now, roundTrip: false, bytes: 0, cursor: false };
  }
  function setView(t0, t1) {
    const minSpan = 0.05;
    let s = Math.max(minSpan, Math.min(duration, t1 - t0));
    let a = t0;
    if (t1 - t0 !== s) a = (t0 + t1) / 2 - s / 2;
    a = Math.max(0, Math.min(duration - s, a));
    view.t0 = a; view.t1 = a + s;
    record.view = [view.t0, view.t1];
    const need = needed().filter(([r, z, i]) => !tiles.has(key(r, z, i)));
    if (need.length) {
      if (pending) pending.roundTrip = true;
      fetchTiles(need, true);
    }
    schedule();
  }
  function zoom(factor, anchorT) {
    const a = anchorT === undefined ? (view.t0 + view.t1) / 2 : anchorT;
    setView(a - (a - view.t0) * factor, a + (view.t1 - a) * factor);
  }
  function pan(dt) { setView(view.t0 + dt, view.t1 + dt); }

  // the cursor's keyframe and its neighbours, as the kernel sent them: arrow steps
  // among them redraw at once, and a new neighbourhood is fetched in the background
  let frames = [];
  let at = 0;
  let refilling = false;
  async function placeCursor(content) {
    // the cursor's own keyframe first (a small, quick reply), then its neighbours
    if (pending) { pending.roundTrip = true; pending.cursor = true; }
    const mine = pending;
    const { msg, size } = await ask({ type: "cursor", neighbours: 0, ...content });
    if (mine) mine.bytes += size;
    frames = msg.frames;
    at = msg.at;
    showFrame();
    if (mine) mine.cursor = false;
    schedule();
    refill();
  }
  async function refill() {
    if (refilling || !cursor) return;
    refilling = true;  // the neighbourhood of the cursor, fetched in the background
    const { msg } = await ask({ type: "cursor", index: cursor.index, step: 0 });
    refilling = false;
    const here = msg.frames.findIndex((f) => f[0].index === (cursor && cursor.index));
    if (here >= 0) { frames = msg.frames; at = here; }
  }
  function showFrame() {
    cursorInfo = frames[at];
    const first = cursorInfo && cursorInfo[0];
    if (first && first.index >= 0) {
      cursor = { t: first.time, index: first.index };
      if (cursor.t < view.t0 || cursor.t > view.t1) {
        const s = view.t1 - view.t0;
        setView(cursor.t - s / 2, cursor.t + s / 2);
      }
    }
    record.cursor = cursor;
    showCursor();
  }
  async function step(delta) {
    if (!cursor) return placeCursor({ t: (view.t0 + view.t1) / 2 });
    const next = at + delta;
    if (next < 0 || next >= frames.length) return placeCursor({ index: cursor.index, step: delta, t: cursor.t });
    at = next;
    showFrame();
    schedule();
    if (at < 3 || at > frames.length - 4) refill();
  }

  // one pointer drags (pans) or clicks (places the cursor); two pointers (fingers on a
  // touch screen) pinch: the span shrinks or grows with their distance, about their midpoint
  let drag = null;
  let pinch = null;
  const touching = new Map();  // pointerId -> clientX
  const pinchState = () => {
    const [a, b] = [...touching.values()];
    const rect = canvas.getBoundingClientRect();
    return { d: Math.max(8, Math.abs(a - b)), mid: (a + b) / 2 - rect.left };
  };
  stage.addEventListener("pointerdown", (ev) => {
    stage.focus({ preventScroll: true });
    touching.set(ev.pointerId, ev.clientX);
    stage.setPointerCapture(ev.pointerId);
    if (touching.size === 2) {  // the second finger: a pinch, not a drag or a click
      drag = null;
      const { d, mid } = pinchState();
      pinch = { d, anchor: T(Math.max(LEFT, mid)), t0: view.t0, t1: view.t1 };
      return;
    }
    if (touching.size === 1) drag = { x: ev.clientX, t0: view.t0, t1: view.t1, moved: false };
  });
  stage.addEventListener("pointermove", (ev) => {
    if (touching.has(ev.pointerId)) touching.set(ev.pointerId, ev.clientX);
    if (pinch && touching.size === 2) {
      const { d, mid } = pinchState();
      begin("pinch", ev);
      // the time under the fingers' midpoint at the start stays under their midpoint now
      const s = (pinch.t1 - pinch.t0) * (pinch.d / d);
      const f = (Math.max(LEFT, mid) - LEFT) / plotW();
      setView(pinch.anchor - f * s, pinch.anchor - f * s + s);
      paint(false);
      return;
    }
    if (!drag) return;
    const dx = ev.clientX - drag.x;
    if (!drag.moved && Math.abs(dx) < 3) return;
    drag.moved = true;
    begin("pan", ev);
    const dt = (-dx / plotW()) * (drag.t1 - drag.t0);
    setView(drag.t0 + dt, drag.t1 + dt);
    paint(false);
  });
  const lift = (ev) => {
    touching.delete(ev.pointerId);
    if (pinch) {  // a pinch ends when a finger lifts; the other does not start a drag
      if (touching.size < 2) pinch = null;
      drag = null;
      return false;
    }
    return true;
  };
  stage.addEventListener("pointercancel", (ev) => { lift(ev); drag = null; });
  stage.addEventListener("pointerup", (ev) => {
    if (!lift(ev)) return;
    if (drag && !drag.moved) {
      const rect = canvas.getBoundingClientRect();
      const x = ev.clientX - rect.left;
      if (x >= LEFT) {
        begin("cursor", ev);
        const t = T(x);
        cursor = { t, index: cursor ? cursor.index : -1 };  // the line at once; the keyframe's values follow
        schedule();
        placeCursor({ t });
      }
    }
    drag = null;
  });
  stage.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const rect = canvas.getBoundingClientRect();
    const at = T(Math.max(LEFT, ev.clientX - rect.left));
    if (Math.abs(ev.deltaX) > Math.abs(ev.deltaY)) {
      begin("pan", ev);
      pan((ev.deltaX / plotW()) * (view.t1 - view.t0));
    } else {
      begin("zoom", ev);
      zoom(Math.exp(ev.deltaY * (ev.ctrlKey ? 0.01 : 0.002)), at);
    }
    paint(false);
  }, { passive: false });
  stage.addEventListener("keydown", (ev) => {
    const k = ev.key;
    if (k === "ArrowRight" || k === "ArrowLeft") {
      ev.preventDefault();
      begin("step", ev);
      step(k === "ArrowRight" ? 1 : -1);
    } else if (k === "+" || k === "=") {
      ev.preventDefault(); begin("zoom", ev); zoom(0.5, cursor ? cursor.t : undefined);
    } else if (k === "-" || k === "_") {
      ev.preventDefault(); begin("zoom", ev); zoom(2, cursor ? cursor.t : undefined);
    } else if (k === "0") {
      ev.preventDefault(); begin("all", ev); setView(0, duration);
    } else if (k === " ") {
      ev.preventDefault(); togglePlay();
    }
    if (pending) paint(false);
  });
  allBtn.onclick = (ev) => { begin("all", ev); setView(0, duration); paint(false); };
  inBtn.onclick = (ev) => { begin("zoom", ev); zoom(0.5, cursor ? cursor.t : undefined); paint(false); };
  outBtn.onclick = (ev) => { begin("zoom", ev); zoom(2, cursor ? cursor.t : undefined); paint(false); };
  playBtn.onclick = () => togglePlay();

  // ---------------------------------------------------------------- audio
  let audioCtx = null;
  async function togglePlay() {
    if (playing) { playing.stop(); return; }
    const run = runs.findIndex((r) => r.has_audio);
    if (run < 0) { info.textContent = "no audio in this run"; return; }
    const from = cursor ? cursor.t : view.t0;
    const { msg, buffers } = await ask({ type: "audio", run, t: from, seconds: 15 });
    if (!msg.n) return;
    const pcm = new Int16Array(aligned(buffers[0]));
    audioCtx = audioCtx || new AudioContext();
    const buf = audioCtx.createBuffer(1, pcm.length, msg.sample_rate);
    const ch = buf.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
    const src = audioCtx.createBufferSource();
    src.buffer = buf;
    src.connect(audioCtx.destination);
    const startedAt = audioCtx.currentTime;
    src.start();
    record.played = { from, seconds: pcm.length / msg.sample_rate };
    playBtn.textContent = "■ stop";
    let stopped = false;
    playing = {
      stop: () => { if (!stopped) { stopped = true; try { src.stop(); } catch (e) { /* ended */ } } },
      head: () => from + (audioCtx.currentTime - startedAt),
    };
    src.onended = () => { stopped = true; playing = null; playBtn.textContent = "▶ play"; schedule(); };
    const tick = () => { if (playing) { schedule(); requestAnimationFrame(tick); } };
    requestAnimationFrame(tick);
  }

  // ---------------------------------------------------------------- drawing
  function schedule() {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(frame);
  }
  function frame() {
    drawQueued = false;
    paint(true);
  }
  // Draw now. An interaction is done when the frame that shows it is produced: at once
  // when drawing inside an animation frame callback, else at the next one (an input
  // handler draws at once when it has every tile: the frame under way then shows it).
  function paint(inFrame) {
    const drawStart = performance.now();
    const complete = draw();
    record.draws.push(performance.now() - drawStart);
    if (complete && pending && !pending.cursor) {
      const p = pending;
      pending = null;
      const drawn = performance.now();
      const done = () => record.stats.push({ kind: p.kind, ms: performance.now() - p.start, roundTrip: p.roundTrip,
        bytes: p.bytes, draw: drawn - drawStart, queued: drawStart - p.start, input: p.handled - p.start });
      if (inFrame) done(); else requestAnimationFrame(done);
    }
    if (complete && record.firstPaint === null) {
      record.firstPaint = performance.now() - startedAt;
      record.firstPaintEpoch = performance.timeOrigin + performance.now();  // wall clock, ms
    }
    if (complete) prefetch();
  }

  function resize() {
    width = Math.max(300, stage.clientWidth || 800);
    const dpr = window.devicePixelRatio || 1;
    canvas.style.width = width + "px";
    canvas.style.height = rows.height + "px";
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(rows.height * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  }

  function tileFor(r, z, i) {
    // the tile itself, else the nearest coarser one held (drawn clipped to the tile's span)
    for (let zz = z, ii = i; zz <= zMax; zz++, ii = Math.floor(ii / 2)) {
      const t = tiles.get(key(r, zz, ii));
      if (t) return t;
    }
    return null;
  }

  function draw() {
    const z = levelFor();
    const vis = visible(z);
    let complete = true;
    ctx.clearRect(0, 0, width, rows.height);
    ctx.font = "11px sans-serif";
    // the pieces to draw: per run, per visible tile, the best tile held
    const pieces = [];
    for (let r = 0; r < R; r++) {
      for (const i of vis) {
        const [a, b] = [i * span(z), (i + 1) * span(z)];
        const t = tileFor(r, z, i);
        if (!t || t.z !== z) complete = false;
        if (t) pieces.push({ r, tile: t, a, b });
      }
    }
    for (const row of rows) drawRow(row, pieces);
    drawAxis();
    drawCursor();
    info.textContent = `${timeText(view.t0, niceStep(view.t1 - view.t0, 6))} – ${timeText(view.t1, niceStep(view.t1 - view.t0, 6))}` +
      `  (${(view.t1 - view.t0) < 1 ? ((view.t1 - view.t0) * 1000).toFixed(0) + " ms" : (view.t1 - view.t0).toFixed(1) + " s"} shown)` +
      (complete ? "" : "  loading…");
    return complete;
  }

  function clipTo(row, a, b) {
    ctx.save();
    ctx.beginPath();
    // whole pixels: neighbouring tiles overlap by a pixel rather than leave a seam
    const x0 = Math.max(LEFT, Math.floor(X(a))), x1 = Math.min(LEFT + plotW(), Math.ceil(X(b)));
    ctx.rect(x0, row.y, Math.max(0, x1 - x0), row.h);
    ctx.clip();
  }

  function drawRow(row, pieces) {
    const { track, y, h } = row;
    ctx.fillStyle = "#fafafa";
    ctx.fillRect(LEFT, y, plotW(), h);
    ctx.fillStyle = "#333";
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    ctx.fillText(row.label + (track.unit ? ` (${track.unit})` : ""), LEFT - 6, y + h / 2);
    if (track.kind === "spans") return drawSpans(row);
    if (track.kind === "points") return drawPoints(row);
    for (const piece of pieces) {
      if (track.kind === "heat" && piece.r !== row.run) continue;
      clipTo(row, piece.a, piece.b);
      if (track.kind === "audio" && piece.tile.audio) {
        const [lo, hi] = runs[piece.r].audio_range;
        drawSeries(piece.tile.audio, 0, 1, row, lo, hi, RUN_COLORS[piece.r], R > 1 ? 0.45 : 0.85, true);
      } else if (track.kind === "lines" && piece.tile.lines) {
        track.columns.forEach((c, k) => {
          const [lo, hi] = unionRange(c);
          const color = R > 1 ? RUN_COLORS[piece.r] : PALETTE[k % PALETTE.length];
          drawSeries(piece.tile.lines, c, spec.lines.length, row, lo, hi, color, R > 1 ? 0.22 : 0.35, false, k);
        });
      } else if (track.kind === "heat" && piece.tile.heat) {
        const ht = piece.tile.heat;
        ctx.imageSmoothingEnabled = false;
        ctx.drawImage(ht.canvas, 0, 0, ht.n, ht.canvas.height, X(ht.t0), y, X(ht.t0 + ht.n * ht.dt) - X(ht.t0), h);
      }
      ctx.restore();
    }
    if (track.kind === "lines" && track.columns.length > 1 && R === 1) {
      ctx.textAlign = "left";
      track.names.forEach((name, k) => {
        ctx.fillStyle = PALETTE[k % PALETTE.length];
        ctx.fillText(name, LEFT + 4 + k * 48, y + 7);
      });
    }
  }

  function unionRange(c) {
    let lo = Infinity, hi = -Infinity;
    for (const run of runs) { lo = Math.min(lo, run.ranges[c][0]); hi = Math.max(hi, run.ranges[c][1]); }
    return [lo, hi];
  }

  function drawSeries(s, c, stride, row, lo, hi, color, alpha, symmetric, k) {
    const { y, h } = row;
    const Y = (v) => y + h - ((v - lo) / (hi - lo || 1)) * h;
    const n = s.n;
    // a line through one value a bucket (the samples themselves, or each bucket's mean
    // inside its band), broken where there is none; the right eyelid dashed
    const line = (values, offset, width) => {
      ctx.strokeStyle = color;
      ctx.lineWidth = width;
      ctx.setLineDash(k === 1 && row.track.name === "eyelids" ? [4, 3] : []);
      ctx.beginPath();
      let open = false;
      for (let j = 0; j < n; j++) {
        const v = values[j * stride + c];
        if (!Number.isFinite(v)) { open = false; continue; }
        const px = X(s.t0 + (j + offset) * s.dt), py = Y(v);
        if (open) ctx.lineTo(px, py); else { ctx.moveTo(px, py); open = true; }
      }
      ctx.stroke();
      ctx.setLineDash([]);
    };
    if (s.raw) return line(s.mins, 0, 1.2);
    // a min/max band: one polygon per run of finite buckets
    ctx.fillStyle = color;
    ctx.globalAlpha = symmetric || s.means ? alpha : Math.min(1, alpha + 0.25);  // lighter under a mean line
    let j = 0;
    while (j < n) {
      while (j < n && !Number.isFinite(s.mins[j * stride + c])) j++;
      const start = j;
      while (j < n && Number.isFinite(s.mins[j * stride + c])) j++;
      if (j <= start) continue;
      ctx.beginPath();
      for (let q = start; q < j; q++) {
        const x0 = X(s.t0 + q * s.dt), x1 = X(s.t0 + (q + 1) * s.dt);
        const v = Y(s.maxs[q * stride + c]);
        if (q === start) ctx.moveTo(x0, v); else ctx.lineTo(x0, v);
        ctx.lineTo(x1, v);
      }
      for (let q = j - 1; q >= start; q--) {
        const x0 = X(s.t0 + q * s.dt), x1 = X(s.t0 + (q + 1) * s.dt);
        const v = Y(s.mins[q * stride + c]) + 0.8;
        ctx.lineTo(x1, v);
        ctx.lineTo(x0, v);
      }
      ctx.closePath();
      ctx.fill();
    }
    ctx.globalAlpha = 1;
    // each bucket's mean inside its band: where the values mostly were, which the band
    // alone does not say (a blink and a closed eye fill the same band)
    if (s.means) line(s.means, 0.5, 1);
  }

  const marks = model.get("marks");
  const markView = marks && marks.byteLength ? floats(marks) : new Float32Array(0);
  function runMarks(r) {
    const m = runs[r].marks;
    const base = m.offset / 4;
    return {
      spans: markView.subarray(base, base + m.spans * 3),
      points: markView.subarray(base + m.spans * 3, base + m.spans * 3 + m.points * 2),
    };
  }
  function drawSpans(row) {
    const { spans } = runMarks(row.run);
    ctx.save();
    ctx.beginPath();
    ctx.rect(LEFT, row.y, plotW(), row.h);
    ctx.clip();
    for (let j = 0; j < spans.length; j += 3) {
      const a = spans[j], b = spans[j + 1];
      if (b < view.t0 || a > view.t1) continue;
      const x0 = X(a), x1 = X(b);
      ctx.fillStyle = STATUS_COLORS[Math.min(STATUS_COLORS.length - 1, spans[j + 2])];
      ctx.fillRect(x0, row.y + 1, Math.max(1, x1 - x0 - 1), row.h - 2);
    }
    ctx.restore();
  }
  function drawPoints(row) {
    const { points } = runMarks(row.run);
    ctx.save();
    ctx.beginPath();
    ctx.rect(LEFT, row.y, plotW(), row.h);
    ctx.clip();
    for (let j = 0; j < points.length; j += 2) {
      const t = points[j];
      if (t < view.t0 || t > view.t1) continue;
      const x = X(t);
      ctx.fillStyle = points[j + 1] ? "#d33b3b" : "#1f77b4";
      ctx.beginPath();
      if (points[j + 1]) { ctx.moveTo(x, row.y + 1); ctx.lineTo(x + 5, row.y + row.h - 1); ctx.lineTo(x - 5, row.y + row.h - 1); }
      else ctx.rect(x - 1, row.y + 1, 2, row.h - 2);
      ctx.fill();
    }
    ctx.restore();
  }

  function drawAxis() {
    const y = rows.height - AXIS + 2;
    const s = view.t1 - view.t0;
    const step = niceStep(s, Math.max(3, plotW() / 110));
    ctx.strokeStyle = "#888";
    ctx.fillStyle = "#333";
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    ctx.beginPath();
    ctx.moveTo(LEFT, y); ctx.lineTo(LEFT + plotW(), y);
    for (let t = Math.ceil(view.t0 / step) * step; t <= view.t1 + 1e-9; t += step) {
      const x = X(t);
      ctx.moveTo(x, y); ctx.lineTo(x, y + 4);
      const text = timeText(t, step);
      const half = ctx.measureText(text).width / 2;  // labels at the ends stay inside the plot
      ctx.fillText(text, Math.min(LEFT + plotW() - half, Math.max(LEFT + half, x)), y + 6);
    }
    ctx.stroke();
    ctx.textAlign = "right";
    ctx.fillText("media time", LEFT - 10, y + 6);
  }

  function drawCursor() {
    const marksAt = [];
    if (cursor) marksAt.push([cursor.t, "#d62728"]);
    if (playing) marksAt.push([playing.head(), "#2ca02c"]);
    for (const [t, color] of marksAt) {
      if (t < view.t0 || t > view.t1) continue;
      const x = X(t);
      ctx.strokeStyle = color;
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(x, 2); ctx.lineTo(x, rows.height - AXIS + 2);
      ctx.stroke();
    }
  }

  function fmt(v, unit) {
    if (v === null || v === undefined) return "–";
    return unit === "ms" ? v.toFixed(1) : v.toFixed(3);
  }
  function showCursor() {
    if (!cursorInfo) return;
    side.innerHTML = "";
    cursorInfo.forEach((c, r) => {
      const box = document.createElement("div");
      box.className = "avatar-nb-explorer-cursor";
      if (c.index < 0) { box.textContent = `${runs[r].label}: no keyframe`; side.appendChild(box); return; }
      const v = c.values;
      const rowsHtml = [
        ["time", `${c.time.toFixed(3)} s`], ["keyframe", c.index], ["request", `${c.req_id} (${c.status})`],
        ["jaw", fmt(v.jaw_open)], ["eyelids", `${fmt(v.eyelid_left)} / ${fmt(v.eyelid_right)}`],
        ["head p/y/r", `${fmt(v.head_pitch)} / ${fmt(v.head_yaw)} / ${fmt(v.head_roll)}`],
        ["latency", `${fmt(v.latency_ms, "ms")} ms`], ["lateness", `${fmt(v.lateness_ms, "ms")} ms`],
        ["inter-arrival", `${fmt(v.gap_ms, "ms")} ms`],
      ].map(([k, val]) => `<tr><th>${k}</th><td>${val}</td></tr>`).join("");
      box.innerHTML = `<div class="avatar-nb-explorer-run" style="color:${RUN_COLORS[r]}">${runs[r].label}</div>` +
        `<div class="avatar-nb-explorer-face">${c.svg}</div><table>${rowsHtml}</table>`;
      side.appendChild(box);
    });
  }

  // ---------------------------------------------------------------- start
  const startedAt = performance.now();
  resize();
  const observer = new ResizeObserver(() => { const w = stage.clientWidth; if (w && Math.abs(w - width) > 2) { resize(); setView(view.t0, view.t1); } });
  observer.observe(stage);
  setView(0, duration);
  for (let r = 0; r < R; r++) fetchTiles([[r, zMax, 0]], false);  // the whole run: what any missing tile falls back on
  schedule();
  return () => { observer.disconnect(); if (playing) playing.stop(); if (audioCtx) audioCtx.close(); };
}

export default { render };
