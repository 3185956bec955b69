// The pay page and the order page's Pay now: the hold's countdown; the pay
// page also submits a gateway's form by itself and polls until paid.
(function () {
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  document.querySelectorAll(".countdown[data-until]").forEach(function (el) {
    var until = new Date(el.dataset.until).getTime();
    function tick() {
      var left = Math.max(0, Math.round((until - Date.now()) / 1000));
      el.textContent = pad(Math.floor(left / 60)) + ":" + pad(left % 60);
      if (left > 0) setTimeout(tick, 1000);
    }
    tick();
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest(".copy-text") : null;
    if (!button || !navigator.clipboard) return;
    navigator.clipboard.writeText(button.dataset.copy).then(function () {
      button.textContent = button.dataset.copied;
    });
  });

  var form = document.getElementById("gateway-form");
  if (form) { form.submit(); return; }

  var page = document.getElementById("paypage");
  if (!page || !document.getElementById("pay-waiting")) return;
  function poll() {
    fetch(page.dataset.statusUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); })
      .then(function (body) {
        if (body.paid) {
          window.location.href = page.dataset.hasSession === "1" ? page.dataset.orderUrl : window.location.href;
        } else {
          setTimeout(poll, 2000);
        }
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 2000);
})();
