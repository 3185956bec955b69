// An export's progress page (templates/admin/exports/export/progress.html):
// asks the status endpoint every second while the jobs write the file, moves
// the bar, and shows the download button once the file is ready. The texts
// come translated from the server.
(function () {
  "use strict";
  var root = document.getElementById("kd-export");
  if (!root) {
    return;
  }
  var bar = document.getElementById("kd-export-bar");
  var percent = document.getElementById("kd-export-percent");
  var state = document.getElementById("kd-export-state");
  var download = document.getElementById("kd-export-download");
  var delay = 1000;

  function show(status) {
    bar.value = status.percent;
    bar.textContent = status.percent + " %";
    percent.textContent = status.percent;
    state.textContent = status.message;
    download.hidden = !status.ready;
    root.setAttribute("data-status", status.status);
  }

  function poll() {
    fetch(root.getAttribute("data-status-url"), {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) {
        if (!response.ok) {
          throw new Error(String(response.status));
        }
        return response.json();
      })
      .then(function (status) {
        delay = 1000;
        show(status);
        if (!status.done) {
          window.setTimeout(poll, delay);
        }
      })
      .catch(function () {
        // The server or the network hiccuped: try again, less often.
        delay = Math.min(delay * 2, 15000);
        window.setTimeout(poll, delay);
      });
  }

  if (root.getAttribute("data-done") !== "1") {
    window.setTimeout(poll, delay);
  }
  download.addEventListener("submit", function () {
    // The file can be taken once: no second click, and the page then reads the new state.
    window.setTimeout(function () {
      download.querySelector("[type=submit]").disabled = true;
    }, 0);
    window.setTimeout(poll, 1500);
  });
})();
