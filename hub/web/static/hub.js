/* The hub's one script: live review pages and queue keys. No framework, no build step.
 *
 * Every page works without it. With it:
 * - the review queue (an element with data-poll) fetches its own rows and counts
 *   again every few seconds and swaps them in;
 * - a review item (#live with data-state and data-version) asks for the item's
 *   version every few seconds and shows a banner when someone else changed it;
 * - on the queue, j / k move between rows and Enter opens the row.
 * Polling pauses while the tab is hidden, and stops after a failed answer
 * (a logged-out session, say): a reload starts it again.
 */
(function () {
  "use strict";

  var EVERY = 10000;

  /* Call work() every EVERY ms while the tab shows; at once when it shows again.
   * work() resolves to true to go on, false to stop for good. */
  function poll(work) {
    var timer = null, busy = false, stopped = false;
    function later() {
      if (timer !== null) { window.clearTimeout(timer); }
      timer = (stopped || document.hidden) ? null : window.setTimeout(tick, EVERY);
    }
    function tick() {
      if (timer !== null) { window.clearTimeout(timer); timer = null; }
      if (busy || stopped || document.hidden) { return; }
      busy = true;
      work().then(function (goOn) { stopped = !goOn; }, function () { /* away: next time */ })
        .then(function () { busy = false; later(); });
    }
    document.addEventListener("visibilitychange", function () {
      if (document.hidden) { later(); } else { tick(); }
    });
    later();
  }

  /* ------------------------------------------------------------- the queue */
  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("#queue-rows tr.queue-row"));
  }

  function focusRow(row) {
    rows().forEach(function (r) { r.classList.remove("selected"); });
    if (!row) { return; }
    row.classList.add("selected");
    var link = row.querySelector("a.open-item");
    if (link) { link.focus(); }
  }

  function liveQueue(section) {
    var url = section.getAttribute("data-poll");
    poll(function () {
      return fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) {
          if (!response.ok || response.redirected) { return false; }
          return response.text().then(function (html) {
            var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("queue-live");
            var old = document.getElementById("queue-live");
            if (!fresh || !old) { return false; }
            var focused = document.activeElement && document.activeElement.closest("tr.queue-row");
            var keep = focused ? focused.getAttribute("data-id") : null;
            old.replaceWith(document.importNode(fresh, true));
            if (keep) {
              var again = document.querySelector("#queue-rows tr.queue-row[data-id='" + CSS.escape(keep) + "']");
              if (again) { focusRow(again); }
            }
            return true;
          });
        });
    });
  }

  function typing(target) {
    return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  function queueKeys() {
    document.addEventListener("keydown", function (event) {
      if (event.altKey || event.ctrlKey || event.metaKey || typing(event.target)) { return; }
      if (event.key !== "j" && event.key !== "k") { return; }
      var all = rows();
      if (!all.length) { return; }
      var current = all.indexOf(document.querySelector("#queue-rows tr.selected"));
      var next = event.key === "j" ? current + 1 : current - 1;
      if (current === -1) { next = event.key === "j" ? 0 : all.length - 1; }
      next = Math.max(0, Math.min(all.length - 1, next));
      event.preventDefault();
      focusRow(all[next]);  /* the row's link has focus: Enter opens it */
    });
  }

  /* -------------------------------------------------------------- an item */
  function liveItem(banner) {
    var url = banner.getAttribute("data-state");
    var seen = banner.getAttribute("data-version");
    poll(function () {
      return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok || response.redirected) { return false; }
          return response.json().then(function (state) {
            if (String(state.version) === seen) { return true; }
            banner.hidden = false;
            return false;  /* said once; the reviewer reloads */
          });
        });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var queue = document.querySelector("[data-poll]");
    if (queue) { liveQueue(queue); queueKeys(); }
    var banner = document.getElementById("live");
    if (banner && banner.hasAttribute("data-state")) { liveItem(banner); }
  });
}());
