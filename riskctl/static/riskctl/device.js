// First-party device id for fraud checks: a random id kept in a cookie plus a
// short hash of stable browser traits. Nothing is sent to any third party.
(function () {
  var NAME = "kd_dev";
  function cookie(name) {
    var match = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return match ? decodeURIComponent(match[1]) : "";
  }
  function randomId() {
    var bytes = new Uint8Array(16);
    (window.crypto || window.msCrypto).getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  function traitsHash() {
    var traits = [navigator.language, navigator.platform, navigator.hardwareConcurrency, screen.width + "x" + screen.height,
      screen.colorDepth, new Date().getTimezoneOffset(), Intl.DateTimeFormat().resolvedOptions().timeZone].join("|");
    var h = 2166136261;  // FNV-1a, 32 bit: a short, stable digest
    for (var i = 0; i < traits.length; i++) { h ^= traits.charCodeAt(i); h = Math.imul(h, 16777619) >>> 0; }
    return ("0000000" + h.toString(16)).slice(-8);
  }
  var id = cookie(NAME).split(".")[0];
  if (!/^[0-9a-f]{32}$/.test(id)) id = randomId();
  var value = id + "." + traitsHash();
  document.cookie = NAME + "=" + value + "; max-age=" + 60 * 60 * 24 * 400 + "; path=/; SameSite=Lax";
  var fields = document.querySelectorAll("input[name=device_id]");
  for (var i = 0; i < fields.length; i++) fields[i].value = value;
})();
