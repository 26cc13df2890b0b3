// Lanyard web UI: progressive enhancement only. Every page works without this file.
(function () {
  "use strict";

  // Copy buttons: <button data-copy="element-id">.
  function copy(btn) {
    var el = document.getElementById(btn.getAttribute("data-copy"));
    if (!el) return;
    var text = el.value !== undefined ? el.value : el.textContent;
    var done = function () {
      var old = btn.textContent;
      btn.textContent = "Copied";
      btn.setAttribute("aria-live", "polite");
      setTimeout(function () { btn.textContent = old; }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { el.select(); });
    } else {
      el.select();
      try { document.execCommand("copy"); done(); } catch (e) { /* the text stays selected */ }
    }
  }

  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest && ev.target.closest("[data-copy]");
    if (btn) { ev.preventDefault(); copy(btn); }
  });

  // Move focus to the error summary of a form that came back with errors.
  document.addEventListener("DOMContentLoaded", function () {
    var errs = document.getElementById("form-errors");
    if (errs) errs.focus();
  });
})();
