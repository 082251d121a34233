// Keyboard shortcuts: a key clicks the element whose data-key names it (claim c, confirm y,
// dismiss d, escalate e, back to the queue j), unless the reader is typing in a field.
"use strict";
document.addEventListener("keydown", function (event) {
  var target = event.target;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (target && /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName)) return;
  var found = document.querySelector('[data-key="' + event.key + '"]');
  if (found && !found.disabled) {
    event.preventDefault();
    found.click();
  }
});
