// avatar_nb AudioPlayer: an <audio> element whose position Python reads (`time`, `playing`) and sets (`seek`).
function render({ model, el }) {
  const audio = document.createElement("audio");
  audio.controls = true;
  audio.style.width = "100%";
  audio.src = model.get("src");
  model.on("change:src", () => { audio.src = model.get("src"); });
  let last = 0;
  const report = (force) => {
    const now = performance.now();
    if (force || now - last > 50) {
      last = now;
      model.set("time", audio.currentTime);
      model.save_changes();
    }
  };
  const tick = () => { report(false); if (!audio.paused) requestAnimationFrame(tick); };
  audio.addEventListener("play", () => { model.set("playing", true); model.save_changes(); requestAnimationFrame(tick); });
  audio.addEventListener("pause", () => { model.set("playing", false); report(true); });
  audio.addEventListener("seeked", () => report(true));
  model.on("change:seek", () => {
    const t = model.get("seek");
    if (Math.abs(audio.currentTime - t) > 0.06) { audio.currentTime = t; }
  });
  el.appendChild(audio);
}
export default { render };
