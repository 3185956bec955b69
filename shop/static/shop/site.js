// Every buyer page: the shop notice's close button and the contact channels'
// copy buttons. Both are hidden in the markup: without JavaScript the notice
// simply shows and the numbers are plain text to select.
(function () {
  var notice = document.getElementById("shop-notice");
  if (notice) {
    var close = notice.querySelector(".shop-notice-close");
    close.hidden = false;
    close.addEventListener("click", function () {
      // The server reads it and leaves this version of the notice out; an
      // edited notice has a new version and shows again.
      document.cookie = notice.dataset.cookie + "=" + encodeURIComponent(notice.dataset.version) +
        "; path=/; max-age=31536000; SameSite=Lax";
      notice.remove();
      var main = document.getElementById("main");
      if (main) main.focus({preventScroll: true});  // not lost on <body> with the button gone
    });
  }

  // Copy ``text``; without the clipboard API (plain http) select ``target``
  // and ask the browser to copy it. Shared with order.js (kamidrop.copyText).
  function copyText(text, target, done) {
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, fallback);
    } else {
      fallback();
    }
    function fallback() {
      var range = document.createRange();
      range.selectNodeContents(target);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      try { if (document.execCommand("copy")) done(); } catch (e) { /* selected: the buyer copies by hand */ }
    }
  }
  window.kamidrop = {copyText: copyText};

  document.querySelectorAll(".copy-contact").forEach(function (button) { button.hidden = false; });
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest(".copy-contact") : null;
    if (!button) return;
    var value = button.parentNode.querySelector(".contact-value");
    copyText(button.dataset.copy, value, function () {
      button.textContent = button.dataset.copied;
      button.classList.add("copied");
    });
  });
})();
