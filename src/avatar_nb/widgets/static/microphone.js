// Front end of avatar_nb.widgets.MicrophonePanel (an anywidget ES module).
//
// The browser captures the microphone (getUserMedia), an AudioWorklet mixes it to mono,
// converts it to s16le at the session's sample rate and cuts it into chunks of
// `chunk_samples`; each chunk goes to the kernel as a binary widget message
// (model.send(content, callbacks, [buffer]), no base64) with its sequence number and
// the time it was handed to the page (performance.now(), seconds). The kernel owns the
// session; this side only captures, and shows what the kernel renders.

const WORKLET = `
class AvatarNbCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions;
    this.target = o.targetRate;
    this.chunk = new Int16Array(o.chunkSamples);
    this.fill = 0;
    this.seq = 0;
    this.ratio = sampleRate / this.target;  // input samples per output sample
    this.pos = 0;                           // fractional read position (resampling)
    this.prev = 0;
    this.live = true;
    this.started = false;  // audio before the kernel's session is open is not part of the capture
    this.port.onmessage = (e) => {
      if (e.data === "start") this.started = true;
      else if (e.data === "flush") this.flush();
    };
  }
  emit(samples, end) {
    const buffer = samples.buffer.slice(samples.byteOffset, samples.byteOffset + samples.byteLength);
    this.port.postMessage({ seq: this.seq++, end, buffer }, [buffer]);
  }
  push(value) {
    const v = Math.max(-1, Math.min(1, value));
    this.chunk[this.fill++] = Math.round(v < 0 ? v * 32768 : v * 32767);
    if (this.fill === this.chunk.length) { this.emit(this.chunk, false); this.fill = 0; }
  }
  flush() {  // stop: the partial chunk (possibly empty) goes out with end = true
    this.emit(this.chunk.subarray(0, this.fill), true);
    this.fill = 0;
    this.live = false;
  }
  process(inputs) {
    if (!this.live) return false;
    if (!this.started) return true;
    const input = inputs[0];
    if (!input || !input.length) return true;
    const n = input[0].length;
    const mono = new Float32Array(n);
    for (const channel of input) for (let i = 0; i < n; i++) mono[i] += channel[i] / input.length;
    if (this.ratio === 1) { for (let i = 0; i < n; i++) this.push(mono[i]); return true; }
    // fallback when the context could not run at the target rate: linear interpolation
    // over a box-filtered signal (the browser's own resampler is used whenever it can be)
    const box = Math.max(1, Math.round(this.ratio));
    for (let i = 0; i < n; i++) {
      let acc = 0;
      for (let k = 0; k < box; k++) acc += mono[Math.max(0, i - k)];
      const cur = acc / box;
      while (this.pos <= i) {
        const frac = this.pos - (i - 1);
        this.push(this.prev + (cur - this.prev) * Math.min(1, Math.max(0, frac)));
        this.pos += this.ratio;
      }
      this.prev = cur;
    }
    this.pos -= n;
    return true;
  }
}
registerProcessor("avatar-nb-capture", AvatarNbCapture);
`;

function describeError(err) {
  const name = (err && err.name) || "Error";
  const hints = {
    NotAllowedError: "microphone permission was refused (allow it in the browser's site settings and press Start again)",
    SecurityError: "the page is not allowed to use the microphone (it must be served over https or from localhost)",
    NotFoundError: "no microphone was found on this computer",
    NotReadableError: "the microphone is in use by another program or could not be opened",
    OverconstrainedError: "no microphone satisfies the requested settings",
    AutoplayBlocked: "the browser holds audio until the page is clicked: press Start",
    TypeError: "this browser offers no microphone API here (is the page served over https or localhost?)",
  };
  return { name, message: (err && err.message) || String(err), hint: hints[name] || "the microphone could not be opened" };
}

// One view per widget captures: the one where Start was pressed, else the first to
// claim it (a widget displayed twice must not open the microphone twice).
const owners = new WeakMap();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function render({ model, el }) {
  const token = {};
  const claim = () => { if (!owners.has(model)) owners.set(model, token); return owners.get(model) === token; };
  el.classList.add("avatar-nb-mic");
  const bar = document.createElement("div");
  bar.className = "avatar-nb-mic-bar";
  const button = (label, cls) => {
    const b = document.createElement("button");
    b.textContent = label;
    b.className = `jupyter-button avatar-nb-mic-${cls}`;
    bar.appendChild(b);
    return b;
  };
  const start = button("Start", "start");
  const stop = button("Stop", "stop");
  const interrupt = button("Interrupt", "interrupt");
  const status = document.createElement("span");
  status.className = "avatar-nb-mic-status";
  bar.appendChild(status);
  const message = document.createElement("div");
  message.className = "avatar-nb-mic-message";
  const stats = document.createElement("div");
  stats.className = "avatar-nb-mic-stats";
  // the live view: waveform over channel traces, the face beside them (kernel-drawn SVG)
  const view = document.createElement("div");
  view.className = "avatar-nb-mic-view";
  const lanes = document.createElement("div");
  const wave = document.createElement("div");
  const traces = document.createElement("div");
  const face = document.createElement("div");
  face.className = "avatar-nb-mic-face";
  const caption = document.createElement("div");
  caption.textContent = "latest keyframe";
  const faceBox = document.createElement("div");
  faceBox.append(face, caption);
  lanes.append(wave, traces);
  view.append(lanes, faceBox);
  el.append(bar, message, stats, view);

  let capture = null;  // {ctx, stream, node, source, sink}
  let sending = false; // chunks go to the kernel only once it says its session is open

  const sync = () => {
    status.textContent = model.get("status");
    const error = model.get("error");
    message.textContent = error;
    message.style.display = error ? "block" : "none";
    stats.innerHTML = model.get("stats");
    wave.innerHTML = model.get("wave");
    traces.innerHTML = model.get("traces");
    face.innerHTML = model.get("face");
    const running = model.get("running");
    start.disabled = running || capture !== null;
    stop.disabled = !running && capture === null;
    interrupt.disabled = !running;
  };
  for (const name of ["status", "error", "stats", "wave", "traces", "face", "running"]) model.on(`change:${name}`, sync);

  const report = (content) => model.send(content);

  async function open() {
    if (capture) return;
    const rate = model.get("sample_rate");
    let ctx;
    try {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        throw Object.assign(new Error("navigator.mediaDevices.getUserMedia is not available"), { name: "TypeError" });
      }
      // Created in the click handler (browsers start audio only after a user gesture),
      // at the session's rate so the browser's own resampler does the conversion.
      try { ctx = new AudioContext({ sampleRate: rate }); } catch (e) { ctx = new AudioContext(); }
      capture = { ctx };
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
      capture.stream = stream;
      let source;
      try { source = ctx.createMediaStreamSource(stream); } catch (e) {
        // some browsers refuse a stream at another rate: capture at the device rate, resample in the worklet
        await ctx.close();
        ctx = new AudioContext();
        capture.ctx = ctx;
        source = ctx.createMediaStreamSource(stream);
      }
      const url = URL.createObjectURL(new Blob([WORKLET], { type: "application/javascript" }));
      await ctx.audioWorklet.addModule(url);
      URL.revokeObjectURL(url);
      const node = new AudioWorkletNode(ctx, "avatar-nb-capture", {
        numberOfInputs: 1, numberOfOutputs: 1, channelCountMode: "explicit", channelCount: 2,
        processorOptions: { targetRate: rate, chunkSamples: model.get("chunk_samples") },
      });
      const sink = ctx.createGain();
      sink.gain.value = 0;  // the graph must reach the destination to be rendered; nothing is heard
      node.port.onmessage = (e) => {
        const t = performance.now() / 1000;
        model.send({ type: "chunk", seq: e.data.seq, t, end: e.data.end }, undefined, [e.data.buffer]);
        if (e.data.end) teardown();
      };
      source.connect(node); node.connect(sink); sink.connect(ctx.destination);
      Object.assign(capture, { node, source, sink });
      // without a user gesture (a run started from code) a browser may hold audio suspended
      await Promise.race([ctx.resume(), sleep(2000)]);
      if (ctx.state !== "running") {
        throw Object.assign(new Error(`the audio context is ${ctx.state}`), { name: "AutoplayBlocked" });
      }
      if (sending) node.port.postMessage("start");
      const track = stream.getAudioTracks()[0];
      // the kernel reads a worklet resampling from capture_rate != its sample_rate
      report({ type: "capturing", device: track ? track.label : "", capture_rate: ctx.sampleRate });
    } catch (err) {
      const e = describeError(err);
      report({ type: "error", ...e });
      teardown();
    }
    sync();
  }

  function teardown() {
    if (!capture) return;
    const { ctx, stream } = capture;
    capture = null;
    sending = false;
    if (stream) stream.getTracks().forEach((t) => t.stop());
    if (ctx && ctx.state !== "closed") ctx.close().catch(() => {});
    sync();
  }

  // Stop: a capturing page flushes its partial chunk with end = true, then closes the
  // microphone; otherwise it closes it, and the Stop button tells the kernel.
  function requestStop(fromButton) {
    if (capture && capture.node && sending) capture.node.port.postMessage("flush");
    else { teardown(); if (fromButton) report({ type: "stop" }); }
  }

  model.on("msg:custom", (msg) => {
    if (msg.type === "capture") {
      if (!claim()) return;
      sending = true;
      if (!capture) open();
      else if (capture.node) capture.node.port.postMessage("start");
    }
    else if (msg.type === "stop") requestStop(false);
  });
  start.addEventListener("click", () => { owners.set(model, token); report({ type: "start" }); open(); });
  stop.addEventListener("click", () => requestStop(true));
  interrupt.addEventListener("click", () => report({ type: "interrupt" }));
  sync();
  return () => {  // the view is removed (cell cleared, widget closed)
    teardown();
    if (owners.get(model) === token) owners.delete(model);
  };
}

export default { render };
