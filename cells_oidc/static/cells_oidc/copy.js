/* cells-oidc: progressive enhancement of the code pages (no inline script: the CSP forbids it).
   - a readonly field marked data-select-on-focus selects its whole value when focused or clicked;
   - a button marked data-copy="<field id>" (hidden without JavaScript) copies that field's value and
     announces the result in the element named by data-copy-status. Without JavaScript the field
     still lets the user select and copy the code with the keyboard or the mouse. */
(function () {
  "use strict";

  function selectAll(field) {
    field.focus();
    field.select();
    field.setSelectionRange(0, field.value.length);
  }

  function announce(button, text) {
    var status = document.getElementById(button.getAttribute("data-copy-status") || "");
    if (status) {
      status.textContent = "";
      window.setTimeout(function () { status.textContent = text; }, 30);
    }
  }

  function legacyCopy(field) {
    selectAll(field);
    try {
      return document.execCommand("copy");
    } catch (e) {
      return false;
    }
  }

  function setUp() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-select-on-focus]"), function (field) {
      field.addEventListener("focus", function () { field.select(); });
      field.addEventListener("click", function () { field.select(); });
    });

    Array.prototype.forEach.call(document.querySelectorAll("button[data-copy]"), function (button) {
      var field = document.getElementById(button.getAttribute("data-copy"));
      if (!field) {
        return;
      }
      var copied = button.getAttribute("data-copied") || "Copied";
      var failed = button.getAttribute("data-copy-failed") || "Press Ctrl+C to copy";
      button.hidden = false;
      button.addEventListener("click", function () {
        selectAll(field);
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(field.value).then(
            function () { announce(button, copied); },
            function () { announce(button, legacyCopy(field) ? copied : failed); }
          );
        } else {
          announce(button, legacyCopy(field) ? copied : failed);
        }
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setUp);
  } else {
    setUp();
  }
})();
