// Keyboard shortcuts (none on a page rendered with them turned off: no element names a key):
// a key clicks the element whose data-key names it (claim c, next item j, back to the queue q)
// and moves the focus to the one whose data-focus-key names it (confirm y, dismiss d, escalate
// e), which Enter or Space then presses: a key alone takes no decision.
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
// A confirmation charges the account's credit and applies dispositions: its button opens the
// page's dialog instead of sending the form, and only the dialog's own button sends it. Escape
// or Cancel closes the dialog, sending nothing, and gives the keyboard back to the button.
// Without the script the button posts the form to the step, whose answer is the page with the
// dialog open in it (Cancel there is a link back to the item).
var asking = document.getElementById("confirm-dialog");
var asks = document.getElementById("confirm");
if (asking && asks && asking.showModal) {
  asking.closest("form").addEventListener("submit", function (event) {
    if (event.submitter !== asks) return;
    event.preventDefault();
    if (asking.open) asking.close();
    asking.showModal();
    document.getElementById("confirm-send").focus();
  });
  document.getElementById("confirm-cancel").addEventListener("click", function (event) {
    event.preventDefault();
    asking.close();
  });
  asking.addEventListener("close", function () {
    asks.focus();
  });
}
// A key is the reader's typing, not a shortcut, in any form control (a focused button
// included: a word said to speech input there, or keys typed into the wrong place) or editable
// text, while an input method composes (Chinese is typed as letters that the method turns into
// characters: keyCode 229 on the keydown that starts it, isComposing on those that follow), and
// with Ctrl, Alt or Meta, which are the browser's and the system's.
function typing(event) {
  var target = event.target;
  if (event.isComposing || event.keyCode === 229) return true;
  if (event.ctrlKey || event.metaKey || event.altKey) return true;
  return Boolean(
    target &&
      target.closest &&
      (target.isContentEditable || target.closest("input, textarea, select, button"))
  );
}
document.addEventListener("keydown", function (event) {
  if (event.defaultPrevented || event.repeat || typing(event)) return;
  var keyed = document.querySelectorAll("[data-key], [data-focus-key]");
  for (var i = 0; i < keyed.length; i++) {
    var found = keyed[i];
    var focuses = found.getAttribute("data-focus-key") === event.key;
    if (!focuses && found.getAttribute("data-key") !== event.key) continue;
    if (found.disabled) return;
    event.preventDefault();
    if (focuses) {
      found.focus();
    } else {
      found.click();
    }
    return;
  }
});
