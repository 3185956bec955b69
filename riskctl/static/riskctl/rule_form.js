// The rule form: show the chosen signal's help text under the field.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var select = document.getElementById("id_feature");
    var help = document.getElementById("id_feature_helptext");
    if (!select || !help) return;
    select.addEventListener("change", function () {
      var option = select.options[select.selectedIndex];
      var text = option ? option.getAttribute("data-help") : "";
      var target = help.querySelector("div") || help;
      target.textContent = text || "";
    });
  });
})();
