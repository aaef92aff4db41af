/* The home page: the flow as an inline SVG diagram (layered, left to right) and each node's live health. */
(function () {
  "use strict";
  var opea = window.opea, svg = opea.svg, pipeline = opea.pipeline;
  var POLL_MS = 5000;
  var BOX_W = 150, BOX_H = 64, GAP_X = 70, GAP_Y = 26, PAD = 16, BESIDE_GAP = 48;
  var COLORS = { healthy: "#146c2e", down: "#b3261e", unknown: "#5f6770" };
  var WORDS = { healthy: "✓ healthy", down: "✕ down", unknown: "? unknown" };

  var flow = pipeline.nodes.filter(function (node) { return !node.beside; });
  var beside = pipeline.nodes.filter(function (node) { return node.beside; });
  var names = flow.map(function (node) { return node.name; });
  var edges = pipeline.edges.filter(function (edge) {
    return names.indexOf(edge.source) >= 0 && names.indexOf(edge.target) >= 0;
  });

  /* layers: the longest path from an entry node (cycles, should there be any, are cut) */
  function layers() {
    var layer = {};
    names.forEach(function (name) { layer[name] = 0; });
    for (var round = 0; round < names.length; round++) {
      var changed = false;
      edges.forEach(function (edge) {
        if (layer[edge.target] < layer[edge.source] + 1 && layer[edge.source] + 1 < names.length) {
          layer[edge.target] = layer[edge.source] + 1; changed = true;
        }
      });
      if (!changed) break;
    }
    var columns = [];
    names.forEach(function (name) { (columns[layer[name]] = columns[layer[name]] || []).push(name); });
    columns = columns.filter(Boolean);
    /* order each column by the mean position of its predecessors (one sweep keeps crossings down) */
    var position = {};
    columns.forEach(function (column, index) {
      if (index > 0) {
        column.sort(function (a, b) { return mean(a) - mean(b); });
      }
      column.forEach(function (name, row) { position[name] = row; });
    });
    function mean(name) {
      var sources = edges.filter(function (e) { return e.target === name && position[e.source] !== undefined; })
        .map(function (e) { return position[e.source]; });
      return sources.length ? sources.reduce(function (a, b) { return a + b; }, 0) / sources.length : 0;
    }
    return columns;
  }

  var boxes = {};
  function draw() {
    var columns = layers();
    var tallest = Math.max.apply(null, columns.map(function (c) { return c.length; }).concat([1]));
    var flowHeight = tallest * BOX_H + (tallest - 1) * GAP_Y;
    var width = Math.max(columns.length * BOX_W + (columns.length - 1) * GAP_X,
      beside.length * BOX_W + Math.max(0, beside.length - 1) * GAP_Y) + 2 * PAD;
    columns.forEach(function (column, index) {
      var height = column.length * BOX_H + (column.length - 1) * GAP_Y;
      column.forEach(function (name, row) {
        boxes[name] = { x: PAD + index * (BOX_W + GAP_X), y: PAD + (flowHeight - height) / 2 + row * (BOX_H + GAP_Y) };
      });
    });
    var besideTop = PAD + flowHeight + BESIDE_GAP;
    beside.forEach(function (node, index) { boxes[node.name] = { x: PAD + index * (BOX_W + GAP_Y), y: besideTop + 22 }; });
    var height = (beside.length ? besideTop + 22 + BOX_H : PAD + flowHeight) + PAD;

    var root = svg("svg", { viewBox: "0 0 " + width + " " + height, width: width, role: "img",
      "aria-labelledby": "diagram-title diagram-desc", style: "min-width:" + Math.round(width * 0.62) + "px;max-width:100%" });
    root.appendChild(svg("title", { id: "diagram-title", text: "The flow of " + pipeline.name }));
    root.appendChild(svg("desc", { id: "diagram-desc", text: describe() }));
    var defs = svg("defs");
    var marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7,
      orient: "auto-start-reverse" }, svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#4a525c" }));
    defs.appendChild(marker);
    root.appendChild(defs);

    var edgeLayer = svg("g", { class: "edges" });
    var labelLayer = svg("g", { class: "labels" });
    edges.forEach(function (edge) {
      var a = boxes[edge.source], b = boxes[edge.target];
      var x1 = a.x + BOX_W, y1 = a.y + BOX_H / 2, x2 = b.x, y2 = b.y + BOX_H / 2;
      var back = x2 <= x1;
      var d = back
        ? "M" + x1 + "," + y1 + " C" + (x1 + 60) + "," + (y1 - 90) + " " + (x2 - 60) + "," + (y2 - 90) + " " + x2 + "," + y2
        : "M" + x1 + "," + y1 + " C" + (x1 + GAP_X / 2) + "," + y1 + " " + (x2 - GAP_X / 2) + "," + y2 + " " + x2 + "," + y2;
      var conditional = edge.condition && edge.condition !== "success";
      edgeLayer.appendChild(svg("path", { d: d, fill: "none", stroke: edge.condition === "error" ? "#b3261e" : "#4a525c",
        "stroke-width": 1.6, "stroke-dasharray": conditional ? "5 3" : null, "marker-end": "url(#arrow)" }));
      if (conditional) {
        var mx = (x1 + x2) / 2, my = (y1 + y2) / 2 - (back ? 68 : 0);
        var label = edge.condition.length > 22 ? edge.condition.slice(0, 21) + "…" : edge.condition;
        var w = Math.min(GAP_X + 40, label.length * 6.6 + 10);
        labelLayer.appendChild(svg("rect", { x: mx - w / 2, y: my - 10, width: w, height: 18, rx: 4, fill: "#ffffff",
          stroke: "#c9d0d8" }));
        var text = svg("text", { x: mx, y: my + 3.5, "text-anchor": "middle", "font-size": 11, fill: "#1b1f24", text: label });
        text.appendChild(svg("title", { text: "condition: " + edge.condition }));
        labelLayer.appendChild(text);
      }
    });
    root.appendChild(edgeLayer);

    if (beside.length) {
      var lineY = PAD + flowHeight + BESIDE_GAP / 2;
      root.appendChild(svg("line", { x1: PAD, x2: width - PAD, y1: lineY, y2: lineY, stroke: "#c9d0d8",
        "stroke-dasharray": "4 4" }));
      root.appendChild(svg("text", { x: PAD, y: besideTop + 12, "font-size": 12, fill: "#4a525c", text: "Beside the flow" }));
    }
    pipeline.nodes.forEach(function (node) { root.appendChild(nodeBox(node)); });
    root.appendChild(labelLayer);
    var holder = document.getElementById("diagram");
    holder.textContent = "";
    holder.appendChild(root);
  }

  function describe() {
    var parts = edges.map(function (e) {
      return e.source + " to " + e.target + (e.condition && e.condition !== "success" ? " when " + e.condition : "");
    });
    var text = parts.length ? "Edges: " + parts.join("; ") + "." : "One node: " + names.join(", ") + ".";
    if (beside.length) text += " Beside the flow: " + beside.map(function (n) { return n.name; }).join(", ") + ".";
    return text;
  }

  function clip(text, size) { return text.length > size ? text.slice(0, size - 1) + "…" : text; }

  function nodeBox(node) {
    var at = boxes[node.name];
    var link = svg("a", { href: "/services/" + encodeURIComponent(node.name), "data-node": node.name,
      "aria-label": node.name + " (" + node.type + "): unknown" });
    var group = svg("g", { transform: "translate(" + at.x + "," + at.y + ")" });
    group.appendChild(svg("rect", { class: "box", width: BOX_W, height: BOX_H, rx: 8, fill: "#ffffff",
      stroke: COLORS.unknown, "stroke-width": 2, "stroke-dasharray": node.beside ? "6 3" : null }));
    var name = svg("text", { x: 10, y: 20, "font-size": 14, "font-weight": 700, fill: "#1b1f24", text: clip(node.name, 18) });
    name.appendChild(svg("title", { text: node.name }));
    group.appendChild(name);
    group.appendChild(svg("text", { x: 10, y: 37, "font-size": 11.5, fill: "#4a525c",
      text: clip(node.type + (node.server ? " · " + node.server : ""), 22) }));
    group.appendChild(svg("text", { class: "state", x: 10, y: 55, "font-size": 12, "font-weight": 600,
      fill: COLORS.unknown, text: WORDS.unknown }));
    link.appendChild(group);
    return link;
  }

  /* ---------------------------------------------------------------- health */

  var status = document.getElementById("health-status");

  function show(name, state, detail) {
    var word = state === "healthy" ? "healthy" : state === "down" ? "down" : "unknown";
    var card = document.querySelector('.node-card[data-node="' + CSS.escape(name) + '"]');
    if (card) {
      card.dataset.health = word;
      var badge = card.querySelector(".health");
      badge.dataset.health = word;
      badge.textContent = word;
      badge.title = detail || "";
    }
    var link = document.querySelector('#diagram a[data-node="' + CSS.escape(name) + '"]');
    if (link) {
      link.querySelector("rect.box").setAttribute("stroke", COLORS[word]);
      var text = link.querySelector("text.state");
      text.textContent = WORDS[word];
      text.setAttribute("fill", COLORS[word]);
      var node = pipeline.nodes.filter(function (n) { return n.name === name; })[0];
      link.setAttribute("aria-label", name + " (" + node.type + "): " + word + (detail ? ", " + detail : ""));
    }
  }

  async function probe(node) {
    try {
      var answer = await opea.api(opea.servicePath(node.name, node.health_path), { quiet: true, cache: "no-store" });
      if (answer.ok) return { state: "healthy", detail: "" };
      var body = await opea.bodyOf(answer);
      if (answer.status === 401) return { state: "unknown", detail: "needs an API key" };
      return { state: "down", detail: "HTTP " + answer.status + ": " + opea.nodeError(body) };
    } catch (error) {
      return { state: "unknown", detail: String(error.message || error) };
    }
  }

  function instancesText(service) {
    if (!service) return "";
    var instances = service.instances || [];
    if (!instances.length) return service.host ? "at " + service.host + (service.port ? ":" + service.port : "") : "";
    var counts = {};
    instances.forEach(function (instance) { counts[instance.state] = (counts[instance.state] || 0) + 1; });
    var words = Object.keys(counts).map(function (state) { return counts[state] + " " + state.replace("_", " "); });
    return instances.length + (instances.length === 1 ? " instance: " : " instances: ") + words.join(", ");
  }

  async function poll() {
    var megaservice = document.getElementById("megaservice-health");
    var listed = {};
    try {
      var answer = await opea.api("/v1/services", { quiet: true, cache: "no-store" });
      if (answer.ok) {
        var body = await answer.json();
        (body.services || []).forEach(function (service) { listed[service.name] = service; });
        megaservice.dataset.health = "healthy";
        megaservice.textContent = "megaservice: up";
      } else {
        megaservice.dataset.health = answer.status === 401 ? "unknown" : "down";
        megaservice.textContent = "megaservice: " + (answer.status === 401 ? "needs an API key" : "down (HTTP " + answer.status + ")");
        megaservice.title = opea.nodeError(await opea.bodyOf(answer));
      }
    } catch (error) {
      megaservice.dataset.health = "down";
      megaservice.textContent = "megaservice: unreachable";
    }
    var results = await Promise.all(pipeline.nodes.map(probe));
    var healthy = 0;
    pipeline.nodes.forEach(function (node, index) {
      var result = results[index];
      var service = listed[node.name];
      /* the megaservice's view of the instances: all set aside means down even when one answers here */
      if (result.state === "healthy" && service && service.instances && service.instances.length &&
          service.instances.every(function (i) { return i.state === "set_aside"; })) {
        result = { state: "down", detail: "every instance set aside by the megaservice" };
      }
      if (result.state === "healthy") healthy++;
      show(node.name, result.state, result.detail);
      var card = document.querySelector('.node-card[data-node="' + CSS.escape(node.name) + '"] .instances');
      if (card) card.textContent = [instancesText(service), result.detail].filter(Boolean).join(" · ");
    });
    var line = healthy + " of " + pipeline.nodes.length + " services healthy";
    if (status.textContent.indexOf(line) !== 0) status.textContent = line + " (checked " + new Date().toLocaleTimeString() + ")";
    document.body.dataset.healthChecked = "true";
  }

  draw();
  var timer = null;
  async function loop() {
    await poll();
    timer = setTimeout(loop, POLL_MS);
  }
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { clearTimeout(timer); timer = null; } else if (!timer) loop();
  });
  loop();
})();
