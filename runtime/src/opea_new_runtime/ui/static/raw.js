/* The raw page: a JSON object in (validated before it is sent), the answer pretty-printed per terminal node. */
(function () {
  "use strict";
  var opea = window.opea, el = opea.el, pipeline = opea.pipeline;
  var form = document.getElementById("raw-form");
  var body = document.getElementById("body");
  var problem = document.getElementById("body-problem");
  var send = document.getElementById("send");
  var status = document.getElementById("raw-status");
  var answer = document.getElementById("answer");
  var STORE = "opea-new-raw-body";

  var saved = null;
  try { saved = sessionStorage.getItem(STORE); } catch (e) { /* none */ }
  body.value = saved || JSON.stringify({ text: "What is OPEA?" }, null, 2);

  function parse() {
    var value;
    try {
      value = JSON.parse(body.value);
    } catch (error) {
      return { problem: "Not valid JSON: " + error.message };
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      return { problem: "The body must be a JSON object ({…}), not " + (Array.isArray(value) ? "an array" : value === null ? "null" : "a " + typeof value) + "." };
    }
    return { value: value };
  }

  function check() {
    var parsed = parse();
    problem.textContent = parsed.problem || "";
    body.setAttribute("aria-invalid", parsed.problem ? "true" : "false");
    send.disabled = !!parsed.problem;
    return parsed;
  }
  body.addEventListener("input", check);
  check();

  document.getElementById("format").addEventListener("click", function () {
    var parsed = check();
    if (!parsed.problem) body.value = JSON.stringify(parsed.value, null, 2);
  });

  function section(title, value) {
    var text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
    return el("section", { class: "answer", "data-terminal": title },
      el("h3", { text: title }), el("pre", { tabindex: 0, text: text }));
  }

  function render(value, contentType) {
    answer.textContent = "";
    var terminals = pipeline.terminals || [];
    var keyed = value && typeof value === "object" && !Array.isArray(value) && terminals.length > 1 &&
      Object.keys(value).length > 0 && Object.keys(value).every(function (key) { return terminals.indexOf(key) >= 0; });
    if (keyed) {
      Object.keys(value).forEach(function (name) { answer.appendChild(section(name, value[name])); });
    } else {
      var title = terminals.length === 1 ? terminals[0] : "Answer";
      answer.appendChild(section(title, value));
    }
    if (contentType && contentType.indexOf("json") < 0) answer.appendChild(el("p", { class: "muted", text: "content-type: " + contentType }));
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    var parsed = check();
    if (parsed.problem) { body.focus(); return; }
    try { sessionStorage.setItem(STORE, body.value); } catch (e) { /* none */ }
    send.disabled = true;
    opea.setStatus(status, "Sending…");
    var started = performance.now();
    try {
      var response = await opea.api(pipeline.endpoint, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(parsed.value)
      });
      var type = response.headers.get("content-type") || "";
      var result = await opea.bodyOf(response);
      var took = Math.round(performance.now() - started) + " ms";
      if (!response.ok) {
        answer.textContent = "";
        answer.appendChild(el("p", { class: "notice error", role: "alert",
          text: "HTTP " + response.status + " — " + opea.nodeError(result) }));
        opea.setStatus(status, "Failed (HTTP " + response.status + ", " + took + ").", true);
      } else {
        render(result, type);
        opea.setStatus(status, "Answered (HTTP " + response.status + ", " + took + ").");
      }
    } catch (error) {
      opea.setStatus(status, "The request failed: " + (error.message || error), true);
    } finally {
      send.disabled = false;
      check();
    }
  });
})();
