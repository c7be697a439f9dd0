// PiTap web UI: live refresh only. Pages are built on the server with every
// value escaped; this script never builds HTML from data: it swaps in the
// server's own <main> of the same page when the store changes.
"use strict";
(function () {
  if (document.body.dataset.live !== "1" || !window.EventSource) {
    return;
  }
  var status = document.getElementById("live");
  var busy = false;
  var events = new EventSource("/events");
  events.addEventListener("flows", function () {
    if (busy) {
      return;
    }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("main");
        var main = document.getElementById("main");
        if (fresh && main) {
          main.replaceWith(document.importNode(fresh, true));
        }
        if (status) {
          status.textContent = "updated " + new Date().toLocaleTimeString();
        }
      })
      .catch(function () {})
      .then(function () { busy = false; });
  });
  events.onerror = function () {
    if (status) {
      status.textContent = "live updates paused";
    }
  };
  events.onopen = function () {
    if (status) {
      status.textContent = "live";
    }
  };
})();
