// Live run page: polls the run's JSON status URL and redraws the state, progress bar,
// result or error, timings and cancel button. The page is complete without this
// script (it reloads itself in a <noscript> refresh); this only makes it live.
(function () {
  "use strict";

  var root = document.getElementById("run");
  if (!root) {
    return;
  }
  var statusUrl = root.getAttribute("data-status-url");
  // The words pages use for the API's states (myapp/web/words.py).
  var WORDS = JSON.parse(root.getAttribute("data-state-words") || "{}");
  var FINISHED = ["SUCCESS", "FAILURE", "REVOKED"];
  var POLL_MS = 500;
  // Each status request waits on the server for a change (?wait=). Log lines are
  // not such a change: they are read every LOG_MS while the run goes on (one
  // indexed read), and once more after each answer.
  var WAIT_S = 5;
  var LOG_MS = 1000;
  var running = true;
  var logUrl = statusUrl + "/logs";
  var MAX_BACKOFF_MS = 10000;
  var failures = 0;

  function $(id) {
    return document.getElementById(id);
  }

  function isFinished(state) {
    return FINISHED.indexOf(state) !== -1;
  }

  function setText(id, text) {
    var el = $(id);
    if (el) {
      el.textContent = text;
    }
  }

  function showConnection(text) {
    var el = $("run-connection");
    if (!el) {
      return;
    }
    el.textContent = text || "";
    el.hidden = !text;
  }

  function stateMessage(run) {
    var p = run.progress;
    if (run.state === "REVOKED") {
      // Whatever it had reported, a cancelled run added nothing.
      return "Cancelled: nothing was added.";
    }
    if (run.state === "RETRY") {
      return "Waiting to retry" + (p && p.message ? ": " + p.message : "…");
    }
    if (p && p.message) {
      return p.message;
    }
    switch (run.state) {
      case "PENDING":
        return "Waiting for a worker…";
      case "STARTED":
        return "Started…";
      case "FAILURE":
        return "Failed.";
      default:
        return "";
    }
  }

  function drawProgress(run) {
    var bar = $("run-progress");
    var p = run.progress;
    var percent = "";
    bar.hidden = run.state === "REVOKED";
    if (run.state === "REVOKED") {
      bar.max = 1;
      bar.value = 0;
    } else if (run.state === "SUCCESS") {
      bar.max = 1;
      bar.value = 1;
      percent = "100%";
    } else if (p && p.total > 0) {
      bar.max = p.total;
      bar.value = p.current || 0;
      percent = Math.floor(((p.current || 0) * 100) / p.total) + "%";
    } else if (isFinished(run.state)) {
      bar.max = 1;
      bar.value = 0;
    } else {
      // No progress reported yet (PENDING, STARTED): an indeterminate bar.
      bar.removeAttribute("value");
    }
    bar.textContent = percent;
    setText("run-percent", percent);
  }

  function draw(run) {
    root.setAttribute("data-state", run.state);
    var badge = $("run-state");
    badge.innerHTML = "";
    var span = document.createElement("span");
    span.className = "state state-" + run.state.toLowerCase();
    span.title = run.state;
    span.textContent = WORDS[run.state] || run.state.toLowerCase();
    badge.appendChild(span);

    drawProgress(run);
    setText("run-message", stateMessage(run));
    setText("run-attempts", String(run.attempts));
    setText("run-cancelled-by", run.cancelled_by || "—");
    setText("run-started", run.started_at || "—");
    setText("run-finished", run.finished_at || "—");
    setText("run-duration", run.duration_s === null ? "—" : run.duration_s + " s");

    var result = $("run-result");
    result.hidden = run.state !== "SUCCESS";
    if (run.state === "SUCCESS") {
      var drawn = run.result && typeof run.result === "object" &&
        (Array.isArray(run.result.table) || (run.result.figure && run.result.figure.data));
      if (drawn && !result.hasAttribute("data-drawn")) {
        // A table or a chart is drawn by the server: show the finished page.
        window.location.reload();
        return;
      }
      if (!drawn) {
        setText("run-result-json", JSON.stringify(run.result, null, 2));
      }
    }
    var error = $("run-error");
    error.hidden = !run.error;
    if (run.error) {
      setText("run-error-type", run.error.type);
      setText("run-error-message", run.error.message);
    }
    if (isFinished(run.state)) {
      // Shown only while no line came: the run is over, none will.
      setText("run-log-empty", "The task wrote nothing to its log.");
      var cancel = $("cancel-form");
      if (cancel) {
        cancel.parentNode.removeChild(cancel);
      }
    }
  }

  function drawLogLines(page) {
    var list = $("run-log-lines");
    if (!list) {
      return;
    }
    page.lines.forEach(function (line) {
      var item = document.createElement("li");
      item.className = "log-" + line.level.toLowerCase();
      var at = document.createElement("time");
      at.textContent = line.at.slice(11, 23);
      item.appendChild(at);
      item.appendChild(document.createTextNode(" " + line.level + " " + line.message));
      list.appendChild(item);
    });
    list.setAttribute("data-next", String(page.next));
    var empty = $("run-log-empty");
    if (empty && list.children.length) {
      empty.hidden = true;
    }
    if (page.dropped) {
      setText("run-log-dropped", page.dropped + " later lines were not kept.");
    }
  }

  // One read at a time (two with the same `after` would add lines twice); a read
  // asked for meanwhile happens when the one in flight is done.
  var inflight = null;
  var again = false;

  function fetchLogs() {
    if (inflight) {
      again = true;
      return inflight;
    }
    inflight = readLogs().then(function () {
      inflight = null;
      if (again) {
        again = false;
        return fetchLogs();
      }
    });
    return inflight;
  }

  function readLogs() {
    var list = $("run-log-lines");
    if (!list) {
      return Promise.resolve();
    }
    var after = list.getAttribute("data-next") || "0";
    return fetch(logUrl + "?after=" + after, {
      headers: { Accept: "application/json" },
      cache: "no-store",
    })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (page) {
        if (page) {
          drawLogLines(page);
          if (page.lines.length === 500) {
            return readLogs();
          }
        }
      })
      .catch(function () {});
  }

  function followLogs() {
    fetchLogs().then(function () {
      if (running) {
        window.setTimeout(followLogs, LOG_MS);
      }
    });
  }

  var lastSeen = root.getAttribute("data-state");

  function poll() {
    var asked = Date.now();
    fetch(statusUrl + "?wait=" + WAIT_S, {
      headers: { Accept: "application/json" },
      cache: "no-store",
    })
      .then(function (response) {
        if (response.status === 404) {
          return { gone: true };
        }
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(
        function (run) {
          failures = 0;
          showConnection("");
          if (run.gone) {
            setText("run-message", "This run is no longer in the history.");
            return;
          }
          draw(run);
          running = !isFinished(run.state);
          fetchLogs();
          var seen = JSON.stringify([run.state, run.progress]);
          if (!isFinished(run.state)) {
            // An unchanged answer that came at once: the server's waiting slots
            // are taken, so ask again a little later instead of at once.
            var busy = seen === lastSeen && Date.now() - asked < 1000;
            window.setTimeout(poll, busy ? 1000 : 0);
          }
          lastSeen = seen;
        },
        function () {
          // Network gone or server error: back off, say so, keep trying.
          failures += 1;
          var delay = Math.min(POLL_MS * Math.pow(2, failures), MAX_BACKOFF_MS);
          showConnection(
            "Connection lost, retrying in " + Math.ceil(delay / 1000) + " s…"
          );
          window.setTimeout(poll, delay);
        }
      );
  }

  if (!isFinished(root.getAttribute("data-state"))) {
    poll();
    window.setTimeout(followLogs, LOG_MS);
  }
})();
