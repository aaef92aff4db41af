/* The chat page: the conversation kept in the page, answers streamed as they arrive, a stop button. */
(function () {
  "use strict";
  var opea = window.opea, el = opea.el, pipeline = opea.pipeline;
  var messages = [];
  var controller = null;
  var list = document.getElementById("conversation");
  var form = document.getElementById("chat-form");
  var input = document.getElementById("message");
  var send = document.getElementById("send");
  var stop = document.getElementById("stop");
  var clear = document.getElementById("clear");
  var status = document.getElementById("chat-status");

  function bubble(role, text) {
    var body = el("span", { class: "text", text: text || "" });
    var item = el("li", { class: "message " + role },
      el("span", { class: "who", text: role === "user" ? "You" : role === "assistant" ? pipeline.name : "Error" }), body);
    list.appendChild(item);
    item.scrollIntoView({ block: "end" });
    return { item: item, body: body };
  }

  function busy(on) {
    send.disabled = on;
    stop.disabled = !on;
    clear.disabled = on;
    form.setAttribute("aria-busy", on ? "true" : "false");
  }

  async function ask(text) {
    messages.push({ role: "user", content: text });
    bubble("user", text);
    var answer = bubble("assistant", "");
    answer.item.setAttribute("aria-busy", "true");
    answer.item.dataset.state = "streaming";
    busy(true);
    opea.setStatus(status, "Waiting for the answer…");
    controller = new AbortController();
    var received = "";
    var failure = null;
    try {
      var response = await opea.api(pipeline.endpoint, {
        method: "POST", signal: controller.signal,
        headers: { "Content-Type": "application/json", "Accept": "text/event-stream" },
        body: JSON.stringify({ messages: messages, stream: true })
      });
      if (!response.ok) {
        failure = opea.nodeError(await opea.bodyOf(response));
        failure = "HTTP " + response.status + " — " + failure;
      } else {
        opea.setStatus(status, "Answering…");
        await opea.readStream(response, function (piece) {
          received += piece;
          answer.body.textContent = received;
        }, function (message) { failure = message; });
      }
    } catch (error) {
      if (error && error.name === "AbortError") failure = "stopped";
      else failure = "the request failed: " + (error && error.message ? error.message : error);
    } finally {
      controller = null;
      busy(false);
      answer.item.removeAttribute("aria-busy");
    }
    if (received) messages.push({ role: "assistant", content: received });
    if (failure === "stopped") {
      answer.item.dataset.state = "stopped";
      if (!received) answer.body.textContent = "(stopped before the first word)";
      opea.setStatus(status, "Stopped.");
    } else if (failure) {
      answer.item.dataset.state = "failed";
      if (!received) answer.item.remove();
      var shown = bubble("error", failure);
      shown.item.setAttribute("role", "alert");
      opea.setStatus(status, "The answer failed.", true);
    } else {
      answer.item.dataset.state = "done";
      if (!received) answer.body.textContent = "(an empty answer)";
      opea.setStatus(status, "Answered.");
    }
    input.focus();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text || controller) return;
    input.value = "";
    ask(text);
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  stop.addEventListener("click", function () { if (controller) controller.abort(); });
  clear.addEventListener("click", function () {
    messages = [];
    list.textContent = "";
    opea.setStatus(status, "A new conversation.");
    input.focus();
  });
})();
