// The market page refreshes its book, trades and the user's orders by itself
// while it is open and visible. Without script, reloading does the same.
(function () {
  "use strict";
  var live = document.getElementById("market-live");
  if (!live || !window.fetch) return;
  var url = live.getAttribute("data-live-url");
  var every = 3000;

  function refresh() {
    if (document.hidden) return;
    // Keep focus on a cancel button that the user is about to press.
    if (live.contains(document.activeElement)) return;
    fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) { if (html !== null) live.innerHTML = html; })
      .catch(function () { /* offline for a moment: try again next time */ });
  }
  setInterval(refresh, every);
  document.addEventListener("visibilitychange", refresh);
})();
