// The order page keeps itself current without reloading: it polls the status
// endpoint and swaps in the timeline and keys fragments the server renders.
// "Show key" asks the server for one key (each reveal is logged there).
(function () {
  var el = document.getElementById("order-status");
  if (!el) return;
  var done = ["DELIVERED", "REFUNDED", "EXPIRED"];

  function csrf(form) {
    var input = form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("reveal")) return;
    event.preventDefault();
    fetch(form.action, {
      method: "POST", credentials: "same-origin",
      headers: {"Accept": "application/json", "X-CSRFToken": csrf(form)},
    })
      .then(function (r) { return r.json().then(function (body) { return {ok: r.ok, body: body}; }); })
      .then(function (res) {
        var code = form.querySelector("code.key");
        if (!res.ok) { code.textContent = res.body.error ? res.body.error.message : "?"; return; }
        code.textContent = res.body.key;
        code.classList.remove("hidden-key");
        var show = form.querySelector(".show-key");
        if (show) show.remove();
        var copy = form.querySelector(".copy-key");
        copy.hidden = false;
        copy.focus();
      });
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest(".copy-key") : null;
    if (!button) return;
    var code = document.getElementById(button.dataset.target);
    var status = button.parentNode.querySelector(".copied");
    function ok() { if (status) status.textContent = button.dataset.copied || "✓"; }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(code.textContent.trim()).then(ok, fallback);
    } else {
      fallback();
    }
    function fallback() {
      var range = document.createRange();
      range.selectNodeContents(code);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      try { document.execCommand("copy"); ok(); } catch (e) { /* selected: the buyer can copy by hand */ }
    }
  });

  function apply(s) {
    if (s.status !== el.dataset.status) {
      el.dataset.status = s.status;
      el.className = "status status-" + s.status.toLowerCase();
      el.textContent = s.status_label;
      if (s.status !== "PENDING_PAYMENT") {
        var paynow = document.querySelector(".paynow");  // paid (or closed): nothing to pay any more
        if (paynow) paynow.remove();
      }
      var area = document.getElementById("keys-area");
      // Keep keys the buyer already revealed on screen (FULFILLING → DELIVERED changes nothing there).
      if (!area.querySelector("code.key:not(.hidden-key)")) area.innerHTML = s.keys_html;
    }
    if (String(s.events) !== el.dataset.events) {
      el.dataset.events = String(s.events);
      document.getElementById("timeline").innerHTML = s.timeline_html;
    }
  }

  function poll() {
    fetch(el.dataset.url, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (s) apply(s);
        if (done.indexOf(el.dataset.status) === -1) setTimeout(poll, 1500);
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  if (done.indexOf(el.dataset.status) === -1) setTimeout(poll, 1500);
})();
