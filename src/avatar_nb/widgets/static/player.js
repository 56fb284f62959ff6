// avatar_nb AudioPlayer: an <audio> element whose position Python reads (`time`, `playing`)
// and sets (`seek`), in seconds of the whole run.
//
// Short audio (`window_seconds` 0): `src` holds all of it; the kernel is never asked.
// Long audio: `src` holds the run's first window; the player asks the kernel for the
// window around a position (message {type: "window", req, t, seconds}; answer: the same
// type and req, `start` in seconds of the run, `sample_rate`, `n`, and one int16 buffer)
// when a seek leaves the window it holds or playback reaches its end (the next window is
// asked for ahead of time, so the switch is a blob swap), and plays it as a WAV blob.
// One request is in flight at a time; the latest seek wins. `start` is where the window
// begins, so the run's position is start + currentTime. The <audio> controls show the
// window; a bar under them shows and seeks the whole run.

const LEAD = 5;     // seconds of a window before the position it is asked for (small steps back stay in it)
const AHEAD = 20;   // the next window is asked for this many seconds before playback leaves this one

function wavUrl(pcm, n, rate) {
  const h = new DataView(new ArrayBuffer(44));
  const text = (at, s) => { for (let i = 0; i < s.length; i++) h.setUint8(at + i, s.charCodeAt(i)); };
  text(0, "RIFF"); h.setUint32(4, 36 + 2 * n, true); text(8, "WAVE");
  text(12, "fmt "); h.setUint32(16, 16, true); h.setUint16(20, 1, true); h.setUint16(22, 1, true);
  h.setUint32(24, rate, true); h.setUint32(28, 2 * rate, true); h.setUint16(32, 2, true); h.setUint16(34, 16, true);
  text(36, "data"); h.setUint32(40, 2 * n, true);
  return URL.createObjectURL(new Blob([h, pcm], { type: "audio/wav" }));
}

function clock(t) {
  const s = Math.max(0, Math.floor(t));
  const mm = String(Math.floor(s / 60) % 60).padStart(2, "0"), ss = String(s % 60).padStart(2, "0");
  return s >= 3600 ? `${Math.floor(s / 3600)}:${mm}:${ss}` : `${mm}:${ss}`;
}

function render({ model, el }) {
  const audio = document.createElement("audio");
  audio.controls = true;
  audio.style.width = "100%";
  audio.src = model.get("src");
  el.appendChild(audio);
  const W = model.get("window_seconds");
  const windowed = W > 0;
  const duration = model.get("duration");
  let start = 0;         // the run's time at the start of what `audio` holds
  let url = null;        // the blob URL of the window in `audio` (revoked when replaced)
  let moving = false;    // a window is being fetched or swapped in: `audio`'s position is not the run's
  let wanted = null;     // {t, play}: the latest position asked for that no window fetched holds yet
  let place = null;      // {t, play}: where to go in the window being swapped in, once it has loaded
  let prefetch = null;   // the request for the window after this one, made while playing
  let busy = false;      // a request is in flight
  let atRunEnd = false;  // playback reached the run's end in its last window
  let reqId = 0;
  const waiting = new Map();
  const bar = windowed ? runBar() : null;
  model.on("change:src", () => { start = 0; audio.src = model.get("src"); });
  const now = () => start + audio.currentTime;
  const end = () => start + (Number.isFinite(audio.duration) ? audio.duration : 0);
  const holds = (from, to, t) => t >= from && (t < to || to >= duration - 1e-3);
  const continues = () => windowed && audio.ended && end() < duration - 1e-3;  // a window's end, not the run's
  const willPlay = () => (moving ? (wanted || place || { play: false }).play : !audio.paused);

  let last = 0;
  const report = (force) => {
    const t = performance.now();
    if (!moving && (force || t - last > 50)) {
      last = t;
      model.set("time", now());
      model.save_changes();
      if (bar) bar.show(now());
    }
  };
  const tick = () => { report(false); if (!audio.paused) requestAnimationFrame(tick); };
  audio.addEventListener("play", () => {
    model.set("playing", true);
    model.save_changes();
    requestAnimationFrame(tick);
    if (atRunEnd) goto(0, true);  // played again after the run's end: from the run's start, as a whole clip would
  });
  audio.addEventListener("pause", () => {
    if (moving || continues()) return;
    model.set("playing", false);
    report(true);
  });
  audio.addEventListener("seeked", () => report(true));
  audio.addEventListener("ended", () => { if (continues()) { goto(end(), true); } else { atRunEnd = windowed && start > 0; } });
  audio.addEventListener("timeupdate", () => {
    if (windowed && !prefetch && !moving && !audio.paused && end() < duration && end() - now() < AHEAD) {
      prefetch = request(end());
    }
  });
  audio.addEventListener("loadedmetadata", () => {
    if (!place || wanted) return;  // not a window swap, or another seek came meanwhile
    const { t, play } = place;
    place = null;
    audio.currentTime = t - start;
    moving = false;
    report(true);
    if (play) audio.play().catch(() => {});
  });
  model.on("change:seek", () => {
    const t = model.get("seek");
    if (moving || Math.abs(now() - t) > 0.06) seekTo(t);
  });

  function seekTo(t) {  // run time t, in this window or in one asked for
    atRunEnd = false;
    if (!windowed || (!moving && holds(start, end(), t))) { audio.currentTime = t - start; } else { goto(t, willPlay()); }
  }
  function request(t) {  // the window around run time t: {from, to, answer: Promise}
    const from = Math.max(0, Math.min(t - LEAD, duration - W));
    const req = ++reqId;
    const answer = new Promise((resolve) => waiting.set(req, resolve));
    model.send({ type: "window", req, t: from, seconds: W });
    return { from, to: Math.min(from + W, duration), answer };
  }
  model.on("msg:custom", (msg, buffers) => {
    const resolve = msg && msg.type === "window" ? waiting.get(msg.req) : undefined;
    if (!resolve || !buffers || !buffers.length) return;
    waiting.delete(msg.req);
    resolve({ start: msg.start, n: msg.n, rate: msg.sample_rate, pcm: buffers[0] });
  });
  function goto(t, play) {
    atRunEnd = false;
    wanted = { t: Math.min(Math.max(0, t), duration), play };
    moving = true;
    if (!busy) settle();
  }
  async function settle() {
    busy = true;
    while (wanted) {
      const next = prefetch && holds(prefetch.from, prefetch.to, wanted.t) ? prefetch : request(wanted.t);
      prefetch = null;
      const win = await next.answer;
      if (!holds(win.start, win.start + win.n / win.rate, wanted.t)) continue;  // a later seek left it: ask again
      place = wanted;
      wanted = null;
      if (url) URL.revokeObjectURL(url);
      url = wavUrl(win.pcm, win.n, win.rate);
      start = win.start;
      audio.src = url;  // loadedmetadata puts it at place
    }
    busy = false;
  }

  function runBar() {  // the whole run under the window's controls: shows and seeks the run's position
    const row = document.createElement("div");
    row.style.cssText = "display:flex;align-items:center;gap:8px;font:12px monospace";
    const range = document.createElement("input");
    Object.assign(range, { type: "range", min: 0, max: duration, step: "any", value: 0 });
    range.style.flex = "1";
    const label = document.createElement("span");
    const text = (t) => { label.textContent = `${clock(t)} / ${clock(duration)}`; };
    let dragging = false;
    range.addEventListener("input", () => { dragging = true; text(+range.value); });
    range.addEventListener("change", () => { dragging = false; seekTo(+range.value); });
    text(0);
    row.append(range, label);
    el.appendChild(row);
    return { show: (t) => { if (!dragging) { range.value = t; text(t); } } };
  }
  return () => { if (url) URL.revokeObjectURL(url); };
}
export default { render };
