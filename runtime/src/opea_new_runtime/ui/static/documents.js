/* The documents page: upload (multipart, field `files`), list (/v1/dataprep/get), delete (/v1/dataprep/delete). */
(function () {
  "use strict";
  var opea = window.opea, el = opea.el;
  var form = document.getElementById("upload-form");
  var input = document.getElementById("files");
  var upload = document.getElementById("upload");
  var status = document.getElementById("documents-status");
  var tbody = document.querySelector("#documents tbody");
  var empty = document.getElementById("documents-empty");

  function size(bytes) {
    if (typeof bytes !== "number") return "";
    if (bytes < 1024) return bytes + " B";
    if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(1) + " KiB";
    return (bytes / 1024 / 1024).toFixed(1) + " MiB";
  }

  async function list() {
    try {
      var answer = await opea.api("/v1/dataprep/get", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
      var body = await opea.bodyOf(answer);
      if (!answer.ok) { opea.setStatus(status, "The list failed (HTTP " + answer.status + "): " + opea.nodeError(body), true); return; }
      var files = Array.isArray(body) ? body : (body && body.files) || [];
      tbody.textContent = "";
      files.forEach(function (file) {
        var name = typeof file === "string" ? file : file.name || file.id || "";
        var remove = el("button", { type: "button", class: "delete", "aria-label": "Delete " + name, text: "Delete",
          onclick: function () { removeFile(name, remove); } });
        tbody.appendChild(el("tr", { "data-name": name },
          el("th", { scope: "row", text: name }),
          el("td", { class: "number", text: file.chunks === undefined ? "" : file.chunks }),
          el("td", { class: "number", text: size(file.bytes) }),
          el("td", {}, remove)));
      });
      empty.hidden = files.length > 0;
      document.getElementById("documents").hidden = files.length === 0;
      return files;
    } catch (error) {
      opea.setStatus(status, "The list failed: " + (error.message || error), true);
    }
  }

  async function removeFile(name, button) {
    if (!window.confirm("Delete " + name + " and its chunks from the store?")) return;
    button.disabled = true;
    var answer = await opea.api("/v1/dataprep/delete", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ file_path: name }) });
    if (answer.ok) opea.setStatus(status, "Deleted " + name + ".");
    else opea.setStatus(status, "Could not delete " + name + " (HTTP " + answer.status + "): " + opea.nodeError(await opea.bodyOf(answer)), true);
    await list();
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    if (!input.files.length) { opea.setStatus(status, "Choose one or more files first.", true); input.focus(); return; }
    var data = new FormData();
    var names = [];
    Array.prototype.forEach.call(input.files, function (file) { data.append("files", file, file.name); names.push(file.name); });
    upload.disabled = true;
    opea.setStatus(status, "Uploading " + names.join(", ") + "…");
    try {
      var answer = await opea.api("/v1/dataprep/ingest", { method: "POST", body: data });
      var body = await opea.bodyOf(answer);
      if (answer.ok) {
        var stored = (body && body.files) || [];
        var chunks = stored.reduce(function (sum, f) { return sum + (f.chunks || 0); }, 0);
        opea.setStatus(status, "Stored " + names.join(", ") + (chunks ? " (" + chunks + " chunks)" : "") + ".");
        form.reset();
      } else {
        opea.setStatus(status, "Upload refused (HTTP " + answer.status + "): " + opea.nodeError(body), true);
      }
    } catch (error) {
      opea.setStatus(status, "The upload failed: " + (error.message || error), true);
    } finally {
      upload.disabled = false;
    }
    await list();
  });
  document.getElementById("refresh").addEventListener("click", list);
  list();
})();
