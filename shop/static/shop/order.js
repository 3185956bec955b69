// The order page keeps itself current without reloading: it polls the status
// endpoint and swaps in the timeline and keys fragments the server renders.
// "Show key" asks the server for one key, "Show all keys" for all of them
// (each reveal is logged there; the session remembers them for the next visit).
(function () {
  var el = document.getElementById("order-status");
  if (!el) return;
  var done = ["DELIVERED", "REFUNDED", "EXPIRED"];

  function csrf(form) {
    var input = form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function showKey(id, secret) {
    var code = document.getElementById("key-" + id);
    if (!code) return;
    code.textContent = secret;
    code.classList.remove("hidden-key");
    var form = code.closest("form");
    var show = form.querySelector(".show-key");
    if (show) show.remove();
    form.querySelector(".copy-key").hidden = false;
  }

  function reveal(form) {
    return fetch(form.action, {
      method: "POST", credentials: "same-origin",
      headers: {"Accept": "application/json", "X-CSRFToken": csrf(form)},
    }).then(function (r) { return r.json().then(function (body) { return {ok: r.ok, body: body}; }); });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList) return;
    if (form.classList.contains("reveal")) {
      event.preventDefault();
      reveal(form).then(function (res) {
        if (!res.ok) {
          form.querySelector("code.key").textContent = res.body.error ? res.body.error.message : "?";
          return;
        }
        showKey(res.body.id, res.body.key);
        form.querySelector(".copy-key").focus();
      });
    } else if (form.classList.contains("reveal-all")) {
      event.preventDefault();
      revealAll();
    }
  });

  function revealAll() {
    var form = document.querySelector("form.reveal-all");
    return reveal(form).then(function (res) {
      if (!res.ok) {
        var status = document.querySelector(".copied-all");
        if (status) status.textContent = res.body.error ? res.body.error.message : "?";
        return false;
      }
      res.body.keys.forEach(function (k) { showKey(k.id, k.key); });
      return true;
    });
  }

  var copyText = window.kamidrop.copyText;  // site.js, loaded before this file

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest(".copy-all") : null;
    if (!button) return;
    var hidden = document.querySelector("#keys-area code.key.hidden-key");
    (hidden ? revealAll() : Promise.resolve(true)).then(function (ok) {
      if (!ok) return;
      var codes = Array.prototype.slice.call(document.querySelectorAll("#keys-area code.key"));
      var text = codes.map(function (c) { return c.textContent.trim(); }).join("\n");
      var status = document.querySelector(".copied-all");
      copyText(text, document.querySelector("#keys-area .key-list"), function () {
        if (status) status.textContent = button.dataset.copied || "✓";
      });
    });
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest(".copy-key") : null;
    if (!button) return;
    var code = document.getElementById(button.dataset.target);
    var status = button.parentNode.querySelector(".copied");
    copyText(code.textContent.trim(), code, function () {
      if (status) status.textContent = button.dataset.copied || "✓";
    });
  });

  // "Copy link": the order's signed link, rendered by the server into a
  // readonly input (selectable without JavaScript; the button needs it).
  var copyLink = document.querySelector(".copy-link");
  if (copyLink) copyLink.hidden = false;
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest(".copy-link") : null;
    if (!button) return;
    var input = document.getElementById(button.dataset.target);
    var status = document.querySelector(".copied-link");
    function copied() { if (status) status.textContent = button.dataset.copied || "✓"; }
    input.focus();
    input.select();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(copied, function () {
        try { if (document.execCommand("copy")) copied(); } catch (e) { /* selected: copy by hand */ }
      });
    } else {
      try { if (document.execCommand("copy")) copied(); } catch (e) { /* selected: copy by hand */ }
    }
  });

  // Pay now ends with the hold: when the countdown runs out, say so and take
  // the buttons away (the server refuses a late Pay now the same way).
  var countdown = document.getElementById("hold-countdown");
  if (countdown) {
    var until = new Date(countdown.dataset.until).getTime();
    (function watch() {
      if (Date.now() < until) { setTimeout(watch, 1000); return; }
      var paynow = document.querySelector(".paynow");
      if (!paynow) return;
      paynow.querySelectorAll("form, .hold").forEach(function (node) { node.remove(); });
      var over = document.getElementById("hold-over");
      if (over) over.hidden = false;
    })();
  }

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
