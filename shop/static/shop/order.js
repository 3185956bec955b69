// Refresh the order page when its status or timeline changes (no reload loop otherwise).
(function () {
  var el = document.getElementById("order-status");
  if (!el) return;
  var done = ["DELIVERED", "REFUNDED", "EXPIRED"];
  if (done.indexOf(el.dataset.status) !== -1) return;
  function poll() {
    fetch(el.dataset.url, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (s && (s.status !== el.dataset.status || String(s.events) !== el.dataset.events)) {
          window.location.reload();
        } else {
          setTimeout(poll, 1500);
        }
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 1500);
})();
