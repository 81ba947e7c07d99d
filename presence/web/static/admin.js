// Live pages: every server-sent "tick", fetch this page's content again
// (?partial=1) and swap it in. When the event stream is down, fall back to
// reloading the page every 10 seconds.
const live = document.getElementById("live");
const state = document.getElementById("live-state");

function fallback() {
  if (state) { state.textContent = "refreshing every 10 s"; state.classList.add("down"); }
  setTimeout(() => location.reload(), 10000);
}

if (live && window.EventSource) {
  const source = new EventSource("/live");
  let busy = false;
  let watchdog = setTimeout(fallback, 15000);
  source.addEventListener("tick", async () => {
    clearTimeout(watchdog);
    watchdog = setTimeout(fallback, 15000);
    if (busy) return;
    busy = true;
    try {
      const url = new URL(location.href);
      url.searchParams.set("partial", "1");
      const response = await fetch(url, { credentials: "same-origin" });
      if (response.redirected) { location.reload(); return; }
      if (response.ok) live.innerHTML = await response.text();
    } catch (error) {
      // The next tick tries again.
    } finally {
      busy = false;
    }
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) { clearTimeout(watchdog); fallback(); }
  });
} else if (live) {
  fallback();
}
