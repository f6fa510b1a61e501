// Compose page: check the attachment total before sending, and show upload progress.
// The form works without this file (the server checks the size too).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("compose-form");
  if (!form) return;
  var input = document.getElementById("attachments");
  var warning = document.getElementById("attachment-total");
  var send = document.getElementById("send");
  var progress = document.getElementById("upload-progress");
  function total() {
    var sum = 0;
    if (input && input.files) {
      for (var i = 0; i < input.files.length; i++) sum += input.files[i].size;
    }
    return sum;
  }
  function check() {
    var limit = parseInt(form.getAttribute("data-limit"), 10) || 0;
    var over = limit > 0 && total() > limit;
    if (warning) {
      warning.hidden = !over;
      warning.textContent = over ? warning.getAttribute("data-message") : "";
    }
    if (send && !send.hasAttribute("data-disabled")) send.disabled = over;
    return !over;
  }
  if (send && send.disabled) send.setAttribute("data-disabled", "1");
  // Drafts saved automatically while the member types (messages without attachments; with
  // attachments, "Save draft" keeps them). The period is the form's data-autosave seconds.
  var dirty = false;
  var saving = false;
  var last = Date.now();
  var status = document.getElementById("autosave-status");
  form.addEventListener("input", function () { dirty = true; });
  function autosave() {
    var seconds = parseInt(form.getAttribute("data-autosave"), 10) || 0;
    if (seconds <= 0 || !dirty || saving || total() > 0 || !window.fetch) return;
    if (Date.now() - last < seconds * 1000) return;
    saving = true;
    dirty = false;
    last = Date.now();
    var data = new FormData(form);
    data.set("action", "save");
    data.delete("attachments");
    var url = new URL(form.getAttribute("action"), window.location.href).href;
    window.fetch(url, { method: "POST", body: data, credentials: "same-origin" })
      .then(function (response) {
        var found = /[?&]draft=(\d+)/.exec(response.url);
        if (found) {
          form.elements["draft_id"].value = found[1];
          if (status) status.textContent = status.getAttribute("data-message");
        } else {
          dirty = true;
        }
      })
      .catch(function () { dirty = true; })
      .then(function () { saving = false; });
  }
  window.setInterval(autosave, 1000);
  if (input) input.addEventListener("change", check);
  form.addEventListener("submit", function (event) {
    var button = event.submitter;
    if (button && button.value === "send" && !check()) {
      event.preventDefault();
      return;
    }
    if (!progress || !window.XMLHttpRequest || total() === 0) return;
    // Large uploads: send with XHR to show progress, then follow the server's answer.
    event.preventDefault();
    var data = new FormData(form);
    if (button && button.name) data.set(button.name, button.value);
    // Not form.action: the buttons are named "action", which shadows the property.
    var target = new URL(form.getAttribute("action"), window.location.href).href;
    var request = new XMLHttpRequest();
    request.open("POST", target);
    progress.hidden = false;
    request.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) progress.value = Math.round((e.loaded / e.total) * 100);
    });
    request.addEventListener("load", function () {
      if (request.responseURL && request.responseURL !== target) {
        window.location.assign(request.responseURL);
      } else {
        document.open();
        document.write(request.responseText);
        document.close();
      }
    });
    request.addEventListener("error", function () { HTMLFormElement.prototype.submit.call(form); });
    request.send(data);
  });
});
