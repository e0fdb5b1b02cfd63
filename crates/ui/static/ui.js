// Optional live parts of Wharf's UI; every page works without them.
document.querySelectorAll("button[data-copy]").forEach(function (button) {
  button.addEventListener("click", function () {
    var field = document.getElementById(button.dataset.copy);
    field.select();
    if (navigator.clipboard) { navigator.clipboard.writeText(field.value); }
    button.textContent = "Copied";
  });
});
// The administration page: the mode and the writes in flight, every two seconds.
var live = document.getElementById("live-state");
if (live) {
  setInterval(function () {
    fetch(live.dataset.src, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (!s) { return; }
        document.getElementById("live-mode").textContent = s.mode;
        document.getElementById("live-in-flight").textContent = s.writes_in_flight;
      });
  }, 2000);
}
