// Live backfill progress on the links page (docs/console.md, "JavaScript"): every element
// with data-poll is replaced by a fresh copy of its fragment every 2 seconds, until the
// backfill is done or failed. Without JavaScript the page works the same, reloaded by hand.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var PERIOD_MS = 2000;

  function refresh(element) {
    var url = element.getAttribute("data-poll");
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (answer) { return answer.ok ? answer.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        var holder = document.createElement("div");
        holder.innerHTML = html;
        var fresh = holder.firstElementChild;
        if (fresh) { element.replaceWith(fresh); }
        if (fresh && fresh.hasAttribute("data-poll")) { later(fresh); }
      })
      .catch(function () { later(element); });
  }

  function later(element) {
    window.setTimeout(function () { refresh(element); }, PERIOD_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll]").forEach(later);
    var summary = document.querySelector(".error-summary");
    if (summary) { summary.focus(); }
  });
})();
