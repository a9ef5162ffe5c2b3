// A rollout in progress: fetch its fragment every few seconds and swap it in, until it ends.
(function () {
  "use strict";
  const live = document.querySelector("[data-poll]");
  if (!live) return;
  const url = live.dataset.poll;
  const every = Number(live.dataset.pollMs) || 2000;
  async function poll() {
    try {
      const response = await fetch(url, { headers: { Accept: "text/html" } });
      if (response.ok) {
        live.innerHTML = await response.text();
        const outcome = live.querySelector("#outcome");
        if (outcome && outcome.dataset.outcome !== "progressing") return;
      }
    } catch (error) {
      // The server restarting is no reason to stop following: try again at the next tick.
    }
    window.setTimeout(poll, every);
  }
  window.setTimeout(poll, every);
})();
