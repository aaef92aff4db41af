/* A service's page: its health and a "try it" form built from its OpenAPI document. */
(function () {
  "use strict";
  var opea = window.opea, el = opea.el;
  var service = JSON.parse(document.getElementById("service").textContent);
  var status = document.getElementById("openapi-status");
  var form = document.getElementById("try-form");
  var select = document.getElementById("operation");
  var summary = document.getElementById("operation-summary");
  var parameters = document.getElementById("parameters");
  var bodyField = document.getElementById("body-field");
  var bodyType = document.getElementById("body-type");
  var textarea = document.getElementById("request-body");
  var problem = document.getElementById("body-problem");
  var formFields = document.getElementById("form-fields");
  var send = document.getElementById("send");
  var requestShown = document.getElementById("request-shown");
  var answerShown = document.getElementById("answer-shown");
  var answerStatus = document.getElementById("answer-status");
  var METHODS = ["post", "get", "put", "patch", "delete"];
  var documentRoot = null;
  var operations = [];
  var current = null;

  /* ---------------------------------------------------------------- health */

  (async function health() {
    var badge = document.getElementById("service-health");
    try {
      var answer = await opea.api(opea.servicePath(service.name, service.health_path), { quiet: true, cache: "no-store" });
      badge.dataset.health = answer.ok ? "healthy" : answer.status === 401 ? "unknown" : "down";
      badge.textContent = answer.ok ? "healthy" : answer.status === 401 ? "needs an API key" : "down (HTTP " + answer.status + ")";
      if (!answer.ok) badge.title = opea.nodeError(await opea.bodyOf(answer));
    } catch (error) {
      badge.dataset.health = "unknown";
      badge.textContent = "unknown";
    }
  })();

  /* ---------------------------------------------------------------- schemas */

  function resolve(schema, seen) {
    seen = seen || [];
    var guard = 0;
    while (schema && typeof schema === "object" && typeof schema.$ref === "string" && guard++ < 32) {
      var ref = schema.$ref;
      if (seen.indexOf(ref) >= 0) return {};
      seen.push(ref);
      if (ref.indexOf("#/") !== 0) return {};
      var target = documentRoot;
      ref.slice(2).split("/").forEach(function (part) {
        part = decodeURIComponent(part.replace(/~1/g, "/").replace(/~0/g, "~"));
        target = target && typeof target === "object" ? target[part] : undefined;
      });
      var rest = {};
      Object.keys(schema).forEach(function (key) { if (key !== "$ref") rest[key] = schema[key]; });
      schema = Object.assign({}, target || {}, rest);
    }
    return schema || {};
  }

  function sample(schema, depth, seen) {
    seen = (seen || []).slice();
    if (schema && schema.$ref) {
      if (seen.indexOf(schema.$ref) >= 0) return {};
      seen.push(schema.$ref);
    }
    schema = resolve(schema, []);
    depth = depth || 0;
    if (depth > 6) return null;
    if ("example" in schema) return schema.example;
    if (Array.isArray(schema.examples) && schema.examples.length) return schema.examples[0];
    if ("default" in schema && schema["default"] !== null) return schema["default"];
    if ("const" in schema) return schema["const"];
    if (Array.isArray(schema.enum) && schema.enum.length) return schema.enum[0];
    var choices = schema.anyOf || schema.oneOf;
    if (Array.isArray(choices) && choices.length) {
      var chosen = choices.map(function (c) { return resolve(c, []); })
        .filter(function (c) { return c.type !== "null"; })[0] || choices[0];
      var merged = Object.assign({}, schema, chosen);
      delete merged.anyOf; delete merged.oneOf;
      return sample(merged, depth + 1, seen);
    }
    if (Array.isArray(schema.allOf)) {
      var all = {};
      schema.allOf.forEach(function (part) {
        var value = sample(part, depth + 1, seen);
        if (value && typeof value === "object" && !Array.isArray(value)) Object.assign(all, value);
      });
      return all;
    }
    var type = Array.isArray(schema.type) ? schema.type.filter(function (t) { return t !== "null"; })[0] : schema.type;
    if (!type && schema.properties) type = "object";
    switch (type) {
      case "object": {
        var result = {};
        var properties = schema.properties || {};
        var required = schema.required || [];
        var names = Object.keys(properties);
        var chosenNames = names.filter(function (name) {
          var property = resolve(properties[name], []);
          return required.indexOf(name) >= 0 || "example" in property || Array.isArray(property.examples);
        });
        if (!chosenNames.length && !required.length) chosenNames = names.slice(0, 8);
        chosenNames.forEach(function (name) { result[name] = sample(properties[name], depth + 1, seen); });
        return result;
      }
      case "array": {
        var item = sample(schema.items || {}, depth + 1, seen);
        return item === null ? [] : [item];
      }
      case "string":
        if (schema.format === "binary") return "";
        if (schema.format === "uri" || schema.format === "url") return "https://example.com/";
        if (schema.format === "date-time") return new Date().toISOString();
        return schema.title && /text|query|input|prompt|message|content/i.test(schema.title) ? "What is OPEA?" : "text";
      case "integer": return typeof schema.minimum === "number" ? Math.ceil(schema.minimum) : 1;
      case "number": return typeof schema.minimum === "number" ? schema.minimum : 0;
      case "boolean": return false;
      default: return {};
    }
  }

  function mediaOf(operation) {
    var content = operation.requestBody && resolve(operation.requestBody, []).content;
    if (!content) return null;
    var types = Object.keys(content);
    var type = types.filter(function (t) { return t.indexOf("json") >= 0; })[0] || types[0];
    return { type: type, media: content[type] || {} };
  }

  function bodyExample(operation) {
    var found = mediaOf(operation);
    if (!found) return null;
    var media = found.media;
    if ("example" in media) return media.example;
    if (media.examples && typeof media.examples === "object") {
      var first = media.examples[Object.keys(media.examples)[0]];
      if (first && "value" in first) return first.value;
    }
    return sample(media.schema || {}, 0);
  }

  /* ---------------------------------------------------------------- the form */

  function choose(index) {
    current = operations[index];
    var operation = current.operation;
    summary.textContent = [operation.summary, operation.description].filter(Boolean).join(" — ").slice(0, 600);
    parameters.textContent = "";
    formFields.textContent = "";
    var params = (operation.parameters || []).concat(current.shared || []).map(function (p) { return resolve(p, []); })
      .filter(function (p) { return p.in === "query" || p.in === "path"; });
    params.forEach(function (param, i) {
      var id = "param-" + i;
      var schema = resolve(param.schema || {}, []);
      var value = "example" in param ? param.example : ("default" in schema ? schema["default"] : "");
      parameters.appendChild(el("label", { for: id, text: param.name + " (" + param.in + (param.required ? ", required" : "") + ")" }));
      parameters.appendChild(el("input", { id: id, type: "text", "data-name": param.name, "data-in": param.in,
        value: value === null || value === undefined ? "" : String(value), required: !!param.required }));
    });
    var found = mediaOf(operation);
    if (!found) {
      bodyField.hidden = true;
    } else if (/multipart|x-www-form-urlencoded/.test(found.type)) {
      bodyField.hidden = true;
      buildFormFields(resolve(found.media.schema || {}, []));
    } else {
      bodyField.hidden = false;
      bodyType.textContent = found.type;
      var example = bodyExample(operation);
      textarea.value = typeof example === "string" && found.type.indexOf("json") < 0 ? example : JSON.stringify(example, null, 2);
    }
    check();
  }

  function buildFormFields(schema) {
    var properties = schema.properties || {};
    Object.keys(properties).forEach(function (name, i) {
      var property = resolve(properties[name], []);
      var choices = (property.anyOf || property.oneOf || [property]).map(function (c) { return resolve(c, []); });
      var files = choices.some(function (c) {
        return c.format === "binary" || (c.type === "array" && resolve(c.items || {}, []).format === "binary");
      });
      var id = "field-" + i;
      formFields.appendChild(el("label", { for: id, text: name + (files ? " (files)" : "") }));
      if (files) {
        formFields.appendChild(el("input", { id: id, type: "file", multiple: true, "data-name": name }));
      } else {
        var value = "default" in property && property["default"] !== null ? property["default"] : "";
        formFields.appendChild(el("input", { id: id, type: "text", "data-name": name, "data-default": String(value),
          value: String(value) }));
      }
    });
  }

  function check() {
    if (bodyField.hidden || !current) { problem.textContent = ""; send.disabled = false; return true; }
    var type = bodyType.textContent;
    if (type.indexOf("json") < 0) { problem.textContent = ""; send.disabled = false; return true; }
    try {
      JSON.parse(textarea.value);
      problem.textContent = "";
      textarea.setAttribute("aria-invalid", "false");
      send.disabled = false;
      return true;
    } catch (error) {
      problem.textContent = "Not valid JSON: " + error.message;
      textarea.setAttribute("aria-invalid", "true");
      send.disabled = true;
      return false;
    }
  }
  textarea.addEventListener("input", check);
  select.addEventListener("change", function () { choose(Number(select.value)); });
  document.getElementById("reset-body").addEventListener("click", function () { choose(Number(select.value)); });

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    if (!current || !check()) return;
    var path = current.path;
    var query = new URLSearchParams();
    parameters.querySelectorAll("input").forEach(function (input) {
      if (input.dataset.in === "path") path = path.replace("{" + input.dataset.name + "}", encodeURIComponent(input.value));
      else if (input.value !== "") query.append(input.dataset.name, input.value);
    });
    var url = opea.servicePath(service.name, path) + (query.toString() ? "?" + query : "");
    var options = { method: current.method.toUpperCase(), headers: {} };
    var shownBody = "";
    if (!bodyField.hidden) {
      options.headers["Content-Type"] = bodyType.textContent;
      options.body = textarea.value;
      shownBody = textarea.value;
    } else if (formFields.childElementCount) {
      var data = new FormData();
      var listed = [];
      formFields.querySelectorAll("input").forEach(function (input) {
        if (input.type === "file") {
          Array.prototype.forEach.call(input.files, function (file) { data.append(input.dataset.name, file, file.name); listed.push(input.dataset.name + "=@" + file.name); });
        } else if (input.value !== "" && input.value !== input.dataset.default) {
          data.append(input.dataset.name, input.value); listed.push(input.dataset.name + "=" + input.value);
        }
      });
      options.body = data;
      shownBody = "(multipart/form-data) " + listed.join(" ");
    }
    requestShown.textContent = options.method + " " + path + (query.toString() ? "?" + query : "") + "  (" + service.name +
      ", through " + url + ")\n" + (options.headers["Content-Type"] ? "Content-Type: " + options.headers["Content-Type"] + "\n" : "") +
      (shownBody ? "\n" + shownBody : "");
    answerShown.textContent = "…";
    answerStatus.textContent = "";
    send.disabled = true;
    var started = performance.now();
    try {
      var response = await opea.api(url, options);
      var type = response.headers.get("content-type") || "";
      answerStatus.textContent = "HTTP " + response.status + (type ? " · " + type.split(";")[0] : "");
      if (type.indexOf("text/event-stream") === 0 && response.body) {
        var reader = response.body.getReader();
        var decoder = new TextDecoder();
        var text = "";
        answerShown.textContent = "";
        for (;;) {
          var chunk = await reader.read();
          if (chunk.done) break;
          text += decoder.decode(chunk.value, { stream: true });
          answerShown.textContent = text;
        }
      } else {
        var body = await opea.bodyOf(response);
        answerShown.textContent = typeof body === "string" ? body : JSON.stringify(body, null, 2);
        if (!response.ok) answerShown.textContent = opea.nodeError(body) + "\n\n" + answerShown.textContent;
      }
      answerStatus.textContent += " · " + Math.round(performance.now() - started) + " ms";
      answerShown.dataset.status = String(response.status);
    } catch (error) {
      answerStatus.textContent = "failed";
      answerShown.textContent = "The request failed: " + (error.message || error);
    } finally {
      send.disabled = false;
      check();
    }
  });

  /* ---------------------------------------------------------------- the OpenAPI document */

  (async function load() {
    try {
      var answer = await opea.api(opea.servicePath(service.name, "openapi.json"), { cache: "no-store" });
      if (!answer.ok) {
        opea.setStatus(status, "No OpenAPI document (HTTP " + answer.status + "): " + opea.nodeError(await opea.bodyOf(answer)), true);
        return;
      }
      documentRoot = await answer.json();
    } catch (error) {
      opea.setStatus(status, "The OpenAPI document could not be read: " + (error.message || error), true);
      return;
    }
    var paths = documentRoot.paths || {};
    Object.keys(paths).forEach(function (path) {
      var item = paths[path] || {};
      METHODS.forEach(function (method) {
        if (item[method]) operations.push({ path: path, method: method, operation: item[method], shared: item.parameters });
      });
    });
    operations.sort(function (a, b) {
      function rank(op) {
        if (op.path === service.endpoint && op.method === "post") return 0;
        if (/health|metrics|statistics/.test(op.path)) return 3;
        return op.method === "post" ? 1 : 2;
      }
      return rank(a) - rank(b);
    });
    if (!operations.length) { opea.setStatus(status, "The OpenAPI document lists no operation."); return; }
    operations.forEach(function (op, index) {
      select.appendChild(el("option", { value: index, text: op.method.toUpperCase() + " " + op.path +
        (op.operation.summary ? " — " + op.operation.summary : "") }));
    });
    form.hidden = false;
    choose(0);
    var info = documentRoot.info || {};
    opea.setStatus(status, operations.length + " operations in " + (info.title || service.name) + (info.version ? " " + info.version : "") + "'s OpenAPI document.");
  })();
})();
