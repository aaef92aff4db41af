/* opea-new web UI: what every page shares (window.opea).

   api(path, options)               fetch on this origin with the API key; on a 401 asks for the key, retries once
   readStream(response, onText, onError)   reads an SSE answer: OpenAI chunks, OPEA's `data: b'...'`, [DONE], errors
   nodeError(body)                  a text naming the failing node of an error body
   textOf(output)                   the answer text in a node's output
   el(tag, attributes, ...children) builds DOM; text always goes in as text nodes (never HTML)

   The key is kept in sessionStorage ("opea-new-api-key"): never in the URL, in localStorage or in a log. */
(function () {
  "use strict";
  var KEY_NAME = "opea-new-api-key";
  var pipeline = JSON.parse(document.getElementById("pipeline").textContent);
  var pendingAsk = null;
  var declined = false;

  function storedKey() {
    try { return sessionStorage.getItem(KEY_NAME) || ""; } catch (e) { return ""; }
  }
  function storeKey(key) {
    try { if (key) sessionStorage.setItem(KEY_NAME, key); else sessionStorage.removeItem(KEY_NAME); } catch (e) { /* private mode */ }
  }

  function el(tag, attributes) {
    var node = document.createElement(tag);
    var attrs = attributes || {};
    Object.keys(attrs).forEach(function (name) {
      var value = attrs[name];
      if (value === null || value === undefined || value === false) return;
      if (name === "text") node.textContent = String(value);
      else if (name === "class") node.className = value;
      else if (name.slice(0, 2) === "on") node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    });
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }
  function append(parent, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(parent, c); }); return; }
    parent.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
  var SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attributes) {
    var node = document.createElementNS(SVG, tag);
    var attrs = attributes || {};
    Object.keys(attrs).forEach(function (name) {
      if (name === "text") node.textContent = String(attrs[name]);
      else if (attrs[name] !== null && attrs[name] !== undefined) node.setAttribute(name, String(attrs[name]));
    });
    for (var i = 2; i < arguments.length; i++) if (arguments[i]) node.appendChild(arguments[i]);
    return node;
  }

  /* ---------------------------------------------------------------- the key dialog */

  function askKey(message) {
    if (pendingAsk) return pendingAsk;
    var dialog = document.getElementById("key-dialog");
    var input = document.getElementById("key-input");
    var text = document.getElementById("key-dialog-message");
    if (!dialog || typeof dialog.showModal !== "function") {
      var typed = window.prompt(message || "API key");
      storeKey(typed || "");
      return Promise.resolve(typed || "");
    }
    text.textContent = message || "This pipeline requires an API key (Authorization: Bearer). Ask whoever runs it.";
    text.className = message ? "error" : "";
    input.value = "";
    pendingAsk = new Promise(function (resolve) {
      var form = document.getElementById("key-form");
      var cancel = document.getElementById("key-cancel");
      function done(key) {
        form.removeEventListener("submit", onSubmit);
        cancel.removeEventListener("click", onCancel);
        dialog.removeEventListener("cancel", onEscape);
        if (dialog.open) dialog.close();
        pendingAsk = null;
        declined = !key;
        if (key) storeKey(key);
        resolve(key);
      }
      function onSubmit(event) { event.preventDefault(); var key = input.value.trim(); if (key) done(key); else input.focus(); }
      function onCancel() { done(""); }
      function onEscape(event) { event.preventDefault(); done(""); }
      form.addEventListener("submit", onSubmit);
      cancel.addEventListener("click", onCancel);
      dialog.addEventListener("cancel", onEscape);
      dialog.showModal();
      input.focus();
    });
    return pendingAsk;
  }

  function withKey(options) {
    var headers = new Headers((options && options.headers) || {});
    var key = storedKey();
    if (key) headers.set("Authorization", "Bearer " + key);
    var sent = {};
    Object.keys(options || {}).forEach(function (name) { sent[name] = options[name]; });
    sent.headers = headers;
    sent.credentials = "same-origin";
    return sent;
  }

  async function refusal(response) {
    try {
      var body = await response.clone().json();
      return nodeError(body);
    } catch (e) {
      return "HTTP 401";
    }
  }

  /* fetch on this origin with the key; a 401 asks for the key once and retries once
     (options.quiet: a poll, which does not ask again once the dialog was cancelled). */
  async function api(path, options) {
    options = options || {};
    if (pipeline.access && pipeline.access.required && !storedKey() && !declined) await askKey();
    var sentKey = storedKey();
    var response = await fetch(path, withKey(options));
    if (response.status === 401 && !(options.signal && options.signal.aborted)) {
      if (pendingAsk) await pendingAsk;  /* another call is asking already: its answer serves this one too */
      if (storedKey() && storedKey() !== sentKey) return fetch(path, withKey(options));
      if (options.quiet && declined) return response;
      var why = await refusal(response);
      var key = await askKey((sentKey ? "The key was refused (401 Unauthorized): " : "An API key is required (401 Unauthorized): ") + why);
      if (key) response = await fetch(path, withKey(options));
    }
    return response;
  }

  /* ---------------------------------------------------------------- errors and answers */

  function nodeError(body) {
    if (body === null || body === undefined || body === "") return "no answer";
    if (typeof body === "string") {
      try { body = JSON.parse(body); } catch (e) { return body.slice(0, 2000); }
    }
    if (typeof body !== "object") return String(body);
    var error = body.error;
    if (error && typeof error === "object") {
      var detail = error.detail || error.message || JSON.stringify(error);
      var status = error.status ? " (HTTP " + error.status + ")" : "";
      if (error.node) return "node " + error.node + " failed" + status + ": " + detail;
      return detail + status;
    }
    if (typeof error === "string") return error;
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) {
      return body.detail.map(function (problem) {
        var where = (problem.loc || []).filter(function (part) { return part !== "body"; }).join(".");
        return (where ? where + ": " : "") + (problem.msg || JSON.stringify(problem));
      }).join("; ");
    }
    return JSON.stringify(body).slice(0, 2000);
  }

  function textOf(output) {
    if (typeof output === "string") return output;
    if (!output || typeof output !== "object") return "";
    if (typeof output.text === "string") return output.text;
    var choices = output.choices;
    if (Array.isArray(choices) && choices.length && choices[0]) {
      var message = choices[0].message || choices[0].delta || {};
      if (typeof message.content === "string") return message.content;
      if (typeof choices[0].text === "string") return choices[0].text;
      return "";
    }
    var keys = ["answer", "content", "response", "generated_text"];
    for (var i = 0; i < keys.length; i++) if (typeof output[keys[i]] === "string") return output[keys[i]];
    return "";
  }

  /* A Python bytes literal (OPEA's `data: b'token'`) to text. */
  function bytesLiteral(literal) {
    var quote = literal[1];
    if (literal[literal.length - 1] !== quote) return literal;
    var inner = literal.slice(2, -1);
    var bytes = [];
    var escapes = { n: 10, t: 9, r: 13, "\\": 92, "'": 39, '"': 34, a: 7, b: 8, f: 12, v: 11, "0": 0 };
    for (var i = 0; i < inner.length; i++) {
      var c = inner[i];
      if (c === "\\" && i + 1 < inner.length) {
        var next = inner[i + 1];
        if (next === "x" && /^[0-9a-fA-F]{2}$/.test(inner.substr(i + 2, 2))) {
          bytes.push(parseInt(inner.substr(i + 2, 2), 16)); i += 3; continue;
        }
        if (Object.prototype.hasOwnProperty.call(escapes, next)) { bytes.push(escapes[next]); i += 1; continue; }
        bytes.push(92); continue;
      }
      var code = c.charCodeAt(0);
      if (code < 128) bytes.push(code);
      else new TextEncoder().encode(c).forEach(function (b) { bytes.push(b); });
    }
    return new TextDecoder("utf-8").decode(new Uint8Array(bytes));
  }

  function StreamFailure(message) { this.message = message; }

  /* The text of one SSE event's data; null for [DONE]. Throws StreamFailure for an error event. */
  function eventText(payload) {
    var stripped = payload.trim();
    if (stripped === "[DONE]") return null;
    if (stripped.slice(0, 2) === "b'" || stripped.slice(0, 2) === 'b"') return bytesLiteral(stripped);
    if (stripped[0] === "{" || stripped[0] === '"') {
      var document_;
      try { document_ = JSON.parse(stripped); } catch (e) { return payload; }
      if (typeof document_ === "string") return document_;
      if (document_ && document_.error && !document_.choices) throw new StreamFailure(nodeError(document_));
      if (document_ && document_.token && typeof document_.token.text === "string") {
        return document_.token.special ? "" : document_.token.text;
      }
      return textOf(document_);
    }
    return payload;
  }

  /* Reads an answer as it comes: onText(piece) for each piece of text, onError(message) for an error event.
     Resolves with {done, text} at the end; a JSON (not streamed) answer gives its text at once. */
  async function readStream(response, onText, onError) {
    var type = (response.headers.get("content-type") || "").toLowerCase();
    var all = "";
    function emit(piece) { if (piece) { all += piece; onText(piece); } }
    if (type.indexOf("application/json") === 0) {
      var body = await response.json();
      if (body && body.error && !body.choices) { if (onError) onError(nodeError(body)); return { done: true, text: "" }; }
      emit(textOf(body));
      return { done: true, text: all };
    }
    var reader = response.body.getReader();
    var decoder = new TextDecoder("utf-8");
    var buffer = "";
    var done = false;
    var sse = type.indexOf("text/event-stream") === 0 ? true : null;
    function handle(event) {
      var data = event.split("\n").filter(function (line) { return line.indexOf("data:") === 0; })
        .map(function (line) { var rest = line.slice(5); return rest[0] === " " ? rest.slice(1) : rest; });
      if (!data.length) return;
      try {
        var piece = eventText(data.join("\n"));
        if (piece === null) { done = true; return; }
        emit(piece);
      } catch (failure) {
        if (failure instanceof StreamFailure) { if (onError) onError(failure.message); } else throw failure;
      }
    }
    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true });
      if (sse === null) {
        var start = buffer.replace(/^\s+/, "");
        if (!start) continue;
        sse = /^(data:|event:|id:|retry:|:)/.test(start);
      }
      if (!sse) { emit(buffer); buffer = ""; continue; }
      buffer = buffer.replace(/\r\n?/g, "\n");
      var events = buffer.split("\n\n");
      buffer = events.pop();
      events.forEach(handle);
    }
    buffer += decoder.decode();
    if (buffer.trim()) { if (sse) handle(buffer.replace(/\r\n?/g, "\n")); else emit(buffer); }
    return { done: done, text: all };
  }

  /* An answer's body as JSON when it is JSON, else its text. */
  async function bodyOf(response) {
    var text = await response.text();
    try { return JSON.parse(text); } catch (e) { return text; }
  }

  function setStatus(element, message, isError) {
    if (!element) return;
    element.textContent = message || "";
    element.classList.toggle("error", !!isError);
  }

  var keyButton = document.getElementById("key-button");
  if (keyButton) keyButton.addEventListener("click", function () {
    askKey(storedKey() ? "Replace the API key kept in this tab." : "");
  });

  window.opea = {
    pipeline: pipeline, api: api, readStream: readStream, nodeError: nodeError, textOf: textOf, askKey: askKey,
    bodyOf: bodyOf, el: el, svg: svg, setStatus: setStatus, bytesLiteral: bytesLiteral,
    servicePath: function (name, path) {
      return "/ui/api/services/" + encodeURIComponent(name) + "/" + String(path || "").replace(/^\/+/, "");
    }
  };
})();
