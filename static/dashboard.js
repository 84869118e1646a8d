// The admin cache dashboard: refreshes its numbers and charts from
// /api/cache/monitor/ without reloading, and sends the warm and clear actions with the
// session's CSRF token. No framework, no CDN.
(function () {
  "use strict";
  var root = document.getElementById("cache-dashboard");
  if (!root) return;
  var csrf = root.getAttribute("data-csrf");
  var every = parseInt(root.getAttribute("data-refresh-ms"), 10) || 5000;
  var SVG = "http://www.w3.org/2000/svg";

  function pct(v) { return v === null || v === undefined ? "–" : (v * 100).toFixed(1) + " %"; }
  function set(id, text) { var el = document.getElementById(id); if (el) el.textContent = text; }

  function chart(id, points, max, empty) {
    var svg = document.getElementById(id);
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var values = points.filter(function (p) { return p.v !== null; });
    if (values.length < 2) {
      var t = document.createElementNS(SVG, "text");
      t.setAttribute("x", "10"); t.setAttribute("y", "60");
      t.textContent = empty || "collecting data (a point every 10 s)…";
      svg.appendChild(t);
      return;
    }
    var first = values[0].t, last = values[values.length - 1].t, span = Math.max(1, last - first);
    var top = max || Math.max.apply(null, values.map(function (p) { return p.v; })) || 1;
    var line = document.createElementNS(SVG, "polyline");
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", "currentColor");
    line.setAttribute("stroke-width", "2");
    line.setAttribute("points", values.map(function (p) {
      return ((p.t - first) / span * 590 + 5).toFixed(1) + "," + (115 - p.v / top * 110).toFixed(1);
    }).join(" "));
    svg.appendChild(line);
  }

  function render(s) {
    var i = s.instance;
    set("backend", i.backend);
    set("grade", i.grade);
    set("hit-ratio", pct(i.hit_ratio));
    set("ratio-1m", pct(s.windows["1m"].hit_ratio));
    set("ratio-5m", pct(s.windows["5m"].hit_ratio));
    set("ratio-1h", pct(s.windows["1h"].hit_ratio));
    set("lookups", String(i.hits + i.misses));
    set("hits", String(i.hits));
    set("misses", String(i.misses));
    set("sets", String(i.sets));
    set("errors", String(i.errors));
    if (s.memory) {
      set("memory", (s.memory.bytes / 1048576).toFixed(1) + " of " + Math.round(s.memory.max_bytes / 1048576) + " MiB, " + s.memory.entries + " entries");
    }
    set("evictions", String(s.evictions));
    set("breaker", i.health ? i.health.breaker : "closed");
    set("warmed", String(s.warming.stored));
    set("warm-effectiveness", pct(s.warming.effectiveness));
    var recs = document.getElementById("recommendations");
    recs.textContent = "";
    (s.recommendations || []).concat(s.analysis ? s.analysis.recommendations : []).forEach(function (r) {
      var li = document.createElement("li"); li.textContent = r; recs.appendChild(li);
    });
    var body = document.getElementById("families");
    body.textContent = "";
    (s.families_by_miss_cost || []).forEach(function (f) {
      var tr = document.createElement("tr");
      [f.name, f.hits, f.misses, pct(f.hit_ratio),
       f.avg_fill_ms === null ? "–" : f.avg_fill_ms.toFixed(2), f.miss_cost_ms.toFixed(1)].forEach(function (v) {
        var td = document.createElement("td"); td.textContent = String(v); tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    var a = s.analysis;
    if (a) {
      set("db-backend", a.database);
      var fill = function (id, items, cells) {
        var body = document.getElementById(id);
        if (!items.length) return;
        body.textContent = "";
        items.forEach(function (item) {
          var tr = document.createElement("tr");
          cells(item).forEach(function (v) {
            var td = document.createElement("td"); td.textContent = String(v); tr.appendChild(td);
          });
          body.appendChild(tr);
        });
      };
      fill("statements", a.statements.slice(0, 10), function (q) {
        return [q.calls, q.total_ms.toFixed(1), q.p99_ms.toFixed(2), q.statement.slice(0, 120)];
      });
      fill("families-saving", a.families_saving_most, function (f) {
        return [f.name, f.hits, f.ms.toFixed(0)];
      });
      var list = function (id, items, text) {
        if (!items.length) return;
        var ul = document.getElementById(id);
        ul.textContent = "";
        items.forEach(function (item) {
          var li = document.createElement("li"); li.textContent = text(item); ul.appendChild(li);
        });
      };
      list("n-plus-one", a.n_plus_one, function (r) {
        return r.route + ": " + r.site + " up to " + r.most_in_one_request + " times in one request (" + r.requests + " requests)";
      });
      list("slow-statements", a.slow_statements.slice(0, 10), function (q) {
        return q.ms.toFixed(1) + " ms: " + q.statement.slice(0, 160);
      });
    }
    var edges = document.getElementById("edges");
    if ((s.edges || []).length > 0) {
      edges.textContent = "";
      s.edges.forEach(function (e) {
        var tr = document.createElement("tr");
        // Path edges (nginx, CloudFront) count the paths sent; CloudFront bills past 1,000 a month.
        var paths = e.paths_this_month === null || e.paths_this_month === undefined ? "–" : e.paths_this_month;
        [e.edge, e.requests, e.delivered, e.coalesced, e.retried, e.failed, e.pending,
         e.repeats_pending, paths, e.last_error || "–"].forEach(function (v) {
          var td = document.createElement("td"); td.textContent = String(v); tr.appendChild(td);
        });
        if (e.warning) {
          tr.children[8].textContent = paths + " ⚠ " + e.warning;
          tr.children[8].className = "warning";
        }
        edges.appendChild(tr);
      });
    }
    var rows = document.getElementById("instances");
    if ((s.instances || []).length > 0) {
      rows.textContent = "";
      s.instances.forEach(function (r) {
        var tr = document.createElement("tr");
        [r.id + (r.this_process ? " (this one)" : ""), r.hits, r.misses, pct(r.hit_ratio), r.errors].forEach(function (v) {
          var td = document.createElement("td"); td.textContent = String(v); tr.appendChild(td);
        });
        rows.appendChild(tr);
      });
    }
    var history = s.history || [];
    chart("chart-ratio", history.map(function (p) { return { t: p.at_unix, v: p.hit_ratio }; }), 1);
    chart("chart-ops", history.map(function (p) { return { t: p.at_unix, v: p.ops_per_second }; }), 0);
    set("updated", new Date().toLocaleTimeString());
  }

  // The history from the database, over the range chosen (read again every minute).
  var range = document.getElementById("history-range");
  function loadHistory() {
    fetch("/api/cache/history/?range=" + encodeURIComponent(range.value), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (h) {
        var at = function (p) { return Date.parse(p.at + "Z") / 1000; };
        var empty = "no history in this range yet (written every minute)";
        chart("history-ratio", h.site.map(function (p) { return { t: at(p), v: p.hit_ratio }; }), 1, empty);
        chart("history-requests", h.site.map(function (p) { return { t: at(p), v: p.requests / h.resolution_seconds }; }), 0, empty);
        set("history-status", h.site.length + " point(s), one per " + (h.resolution_seconds === 60 ? "minute" : "hour"));
      })
      .catch(function (e) { set("history-status", "failed: " + e); });
  }
  range.addEventListener("change", loadHistory);
  loadHistory();
  setInterval(loadHistory, 60000);

  function refresh() {
    fetch("/api/cache/monitor/", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(render)
      .catch(function (e) { set("updated", "failed: " + e); })
      .then(function () { setTimeout(refresh, every); });
  }

  function action(path, body, done) {
    set("action-status", "working…");
    fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (j) { return { ok: r.ok, body: j }; });
    }).then(function (r) {
      set("action-status", r.ok ? done(r.body) : "refused: " + (r.body.error ? r.body.error.message : "error"));
    }).catch(function (e) { set("action-status", "failed: " + e); });
  }

  document.getElementById("warm-button").addEventListener("click", function () {
    action("/api/cache/warm/", { type: "all" }, function (report) {
      var t = { warmed: 0, skipped: 0, failed: 0 };
      Object.keys(report.by_type).forEach(function (k) {
        t.warmed += report.by_type[k].warmed; t.skipped += report.by_type[k].skipped; t.failed += report.by_type[k].failed;
      });
      return "warmed " + t.warmed + ", already warm " + t.skipped + ", failed " + t.failed + " in " + report.duration_ms + " ms";
    });
  });
  document.getElementById("clear-button").addEventListener("click", function () {
    var pattern = document.getElementById("clear-pattern").value;
    action("/api/cache/clear/", { pattern: pattern }, function (r) { return "cleared " + r.deleted + " key(s)"; });
  });

  refresh();
})();
