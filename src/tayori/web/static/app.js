// Tayori webmail: small progressive enhancements. Every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", function () {
      var boxes = document.querySelectorAll('#list-form input[name="ids"]');
      for (var i = 0; i < boxes.length; i++) boxes[i].checked = all.checked;
    });
  }
  // Selecting a folder in "Move to" moves at once when a message is open.
  var confirmers = document.querySelectorAll("[data-confirm]");
  for (var j = 0; j < confirmers.length; j++) {
    confirmers[j].addEventListener("click", function (event) {
      if (!window.confirm(this.getAttribute("data-confirm"))) event.preventDefault();
    });
  }
});
