// Keyboard shortcuts: a key clicks the element whose data-key names it (claim c, confirm y,
// dismiss d, escalate e, next item j, back to the queue q), unless the reader is typing in a
// field.
"use strict";
// A refused form comes back as the answer to its POST, at the address it was posted to: the
// page's own address takes its place in the history, so that a reload or a way back to it
// reads the page again instead of sending the form again (which would take a decision its
// reviewer did not take again, once what refused it has passed: another's claim ended, the
// database back).
var answered = document.body.getAttribute("data-page");
if (answered && window.history.replaceState) {
  window.history.replaceState(null, "", answered);
}
// A refused form's page opens on why it was refused: the keyboard is moved to it, so that a
// screen reader reads it out (an alert already on the page as it loads is not announced by
// all of them), and the next Tab goes on into the form it is in.
var refused = document.querySelector('.error[role="alert"][tabindex="-1"]');
if (refused) {
  refused.focus();
}
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
