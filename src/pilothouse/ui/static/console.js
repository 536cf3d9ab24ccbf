// pilothouse console: refresh the live part of a page every 2 s.
// An element with data-live="URL" is replaced by the HTML fragment that URL answers
// (rendered and escaped by the server). No framework, no build step.
"use strict";

(function () {
  const PERIOD_MS = 2000;

  function refresh(element) {
    const url = element.getAttribute("data-live");
    fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (response.redirected || response.status === 401) {
          window.location.assign("/ui/login");
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null) {
          element.innerHTML = html;
          element.setAttribute("data-refreshed", String(Date.now()));
        }
      })
      .catch(function () {
        element.classList.add("stale"); // the gateway went away: keep what is shown
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(function (element) {
      window.setInterval(function () {
        if (!document.hidden) {
          refresh(element);
        }
      }, PERIOD_MS);
    });
  });
})();
