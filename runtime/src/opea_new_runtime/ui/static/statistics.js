/* The statistics page: /v1/statistics as inline SVG bar charts (requests, failures; p50/p95/p99), refreshed. */
(function () {
  "use strict";
  var opea = window.opea, el = opea.el, svg = opea.svg;
  var REFRESH_MS = 5000;
  var status = document.getElementById("statistics-status");
  var auto = document.getElementById("auto");
  var timer = null;

  function fmt(value) {
    if (value === null || value === undefined) return "–";
    return value >= 100 ? String(Math.round(value)) : String(Math.round(value * 10) / 10);
  }

  /* Horizontal grouped bars: one group per row, one bar per series; the value written beside each bar. */
  function chart(holder, rows, series, unit) {
    /* drawn at the holder's own width, so that its text keeps its size on a phone */
    var WIDTH = Math.max(300, Math.min(672, holder.clientWidth || 560));
    var LABEL = WIDTH < 420 ? 96 : 124, BAR = 14, GAP = 3, GROUP_GAP = 14, RIGHT = 86, TOP = 6;
    var CHARS = WIDTH < 420 ? 12 : 16;
    var max = 0;
    rows.forEach(function (row) { series.forEach(function (s) { max = Math.max(max, row.values[s.key] || 0); }); });
    var scale = max > 0 ? (WIDTH - LABEL - RIGHT) / max : 0;
    var groupHeight = series.length * (BAR + GAP) - GAP;
    var height = TOP + rows.length * (groupHeight + GROUP_GAP);
    var root = svg("svg", { viewBox: "0 0 " + WIDTH + " " + height, role: "img", "aria-label": holder.dataset.title || unit,
      preserveAspectRatio: "xMinYMin meet" });
    rows.forEach(function (row, r) {
      var y0 = TOP + r * (groupHeight + GROUP_GAP);
      var label = row.name.length > CHARS ? row.name.slice(0, CHARS - 1) + "…" : row.name;
      var text = svg("text", { x: 0, y: y0 + groupHeight / 2 + 5, "font-size": 13, "font-weight": row.total ? 700 : 400,
        fill: "#1b1f24", text: label });
      text.appendChild(svg("title", { text: row.name }));
      root.appendChild(text);
      series.forEach(function (s, i) {
        var value = row.values[s.key];
        var y = y0 + i * (BAR + GAP);
        var w = value ? Math.max(2, value * scale) : 0;
        var bar = svg("rect", { x: LABEL, y: y, width: w, height: BAR, fill: s.color, rx: 2, "data-series": s.key, "data-node": row.name });
        bar.appendChild(svg("title", { text: row.name + " " + s.label + ": " + fmt(value) + (unit ? " " + unit : "") }));
        root.appendChild(bar);
        root.appendChild(svg("text", { x: LABEL + w + 4, y: y + BAR - 2.5, "font-size": 12, fill: "#1b1f24",
          text: s.short + " " + fmt(value) }));
      });
    });
    holder.textContent = "";
    var legend = el("ul", { class: "legend" });
    series.forEach(function (s) { legend.appendChild(el("li", { style: "--swatch:" + s.color, text: s.label })); });
    holder.appendChild(legend);
    holder.appendChild(root);
  }

  function render(data) {
    var rows = [{ name: "megaservice", total: true, stats: data.megaservice || {} }];
    Object.keys(data.nodes || {}).forEach(function (name) { rows.push({ name: name, stats: data.nodes[name] }); });
    rows.forEach(function (row) {
      var latency = row.stats.latency_ms || {};
      row.values = { requests: row.stats.requests || 0, failures: row.stats.failures || 0,
        p50: latency.p50, p95: latency.p95, p99: latency.p99 };
    });
    chart(document.getElementById("requests-chart"), rows, [
      { key: "requests", label: "requests", short: "req", color: "#0a58ca" },
      { key: "failures", label: "failures", short: "fail", color: "#b3261e" }], "");
    chart(document.getElementById("latency-chart"), rows, [
      { key: "p50", label: "p50 (median)", short: "p50", color: "#146c2e" },
      { key: "p95", label: "p95", short: "p95", color: "#8a4b00" },
      { key: "p99", label: "p99", short: "p99", color: "#6f42c1" }], "ms");
    var tbody = document.querySelector("#statistics-table tbody");
    tbody.textContent = "";
    rows.forEach(function (row) {
      var v = row.values;
      tbody.appendChild(el("tr", { "data-node": row.name }, el("th", { scope: "row", text: row.name }),
        el("td", { class: "number", text: v.requests }), el("td", { class: "number", text: v.failures }),
        el("td", { class: "number", text: fmt(v.p50) }), el("td", { class: "number", text: fmt(v.p95) }),
        el("td", { class: "number", text: fmt(v.p99) })));
    });
    document.body.dataset.requests = String(rows[0].values.requests);
  }

  async function refresh() {
    try {
      var answer = await opea.api("/v1/statistics", { quiet: true, cache: "no-store" });
      var body = await opea.bodyOf(answer);
      if (!answer.ok) { opea.setStatus(status, "No statistics (HTTP " + answer.status + "): " + opea.nodeError(body), true); return; }
      render(body);
      var up = Math.round(body.uptime_seconds || 0);
      opea.setStatus(status, "Updated " + new Date().toLocaleTimeString() + " · megaservice up " +
        (up >= 3600 ? Math.floor(up / 3600) + " h " : "") + Math.floor((up % 3600) / 60) + " min " + (up % 60) + " s");
    } catch (error) {
      opea.setStatus(status, "No statistics: " + (error.message || error), true);
    }
  }

  function schedule() {
    clearTimeout(timer);
    timer = auto.checked && !document.hidden ? setTimeout(function () { refresh().then(schedule); }, REFRESH_MS) : null;
  }
  auto.addEventListener("change", schedule);
  document.addEventListener("visibilitychange", schedule);
  document.getElementById("refresh").addEventListener("click", refresh);
  document.getElementById("requests-chart").dataset.title = "Requests and failures per node";
  document.getElementById("latency-chart").dataset.title = "Latency percentiles per node, in milliseconds";
  refresh().then(schedule);
})();
