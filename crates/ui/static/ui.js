// Optional live parts of Wharf's UI; every page works without them.
document.querySelectorAll("button[data-copy]").forEach(function (button) {
  button.addEventListener("click", function () {
    var field = document.getElementById(button.dataset.copy);
    field.select();
    if (navigator.clipboard) { navigator.clipboard.writeText(field.value); }
    button.textContent = "Copied";
  });
});
// The administration page: its state fields, from the same report, every two seconds.
var live = document.getElementById("live-state");
if (live) {
  var fields = {
    "live-mode": "effective",
    "live-desired": "desired",
    "live-replicas": "replicas_read_only",
    "live-in-flight": "writes_in_flight",
    "live-uploads": "uploads_open",
    "live-progress": "progress"
  };
  setInterval(function () {
    fetch(live.dataset.src, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (!s) { return; }
        Object.keys(fields).forEach(function (id) {
          var value = s[fields[id]];
          if (id === "live-progress" && value === null) { value = "none under way"; }
          if (id === "live-uploads" && value === null) { value = "unknown (the database did not answer)"; }
          document.getElementById(id).textContent = String(value);
        });
      });
  }, 2000);
}
