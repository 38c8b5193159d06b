// Keyboard use of tandem's pages. Every page works without it.
//
// j / k       move through the rows of a table of conflicts
// Enter       open the current row
// x           tick the current row for a bulk action
// any key K   an element with data-key="K" is clicked (or focused, for a field)
// Escape      leave a field
(function () {
  "use strict";

  var current = -1;

  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("tr.row"));
  }

  function move(step) {
    var all = rows();
    if (all.length === 0) return;
    if (current >= 0 && all[current]) all[current].classList.remove("current");
    current = Math.max(0, Math.min(all.length - 1, current + step));
    var row = all[current];
    row.classList.add("current");
    row.scrollIntoView({ block: "nearest" });
  }

  function currentRow() {
    var all = rows();
    return current >= 0 ? all[current] : null;
  }

  function typing(target) {
    var tag = target && target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable);
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(event.target)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    var row = currentRow();
    if (event.key === "j" || event.key === "k") {
      move(event.key === "j" ? 1 : -1);
    } else if (event.key === "Enter" && row && event.target === document.body) {
      window.location.href = row.getAttribute("data-href");
    } else if (event.key === "x" && row) {
      var box = row.querySelector("input[type=checkbox]");
      if (box && !box.disabled) box.checked = !box.checked;
    } else {
      var target = document.querySelector('[data-key="' + CSS.escape(event.key) + '"]');
      if (!target) return;
      if (typing(target)) target.focus();
      else target.click();
    }
    event.preventDefault();
  });

  // A form that asks before it acts (bulk resolution, discarding a write).
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  // A click on a row of conflicts opens it, unless it was on a control.
  document.addEventListener("click", function (event) {
    var row = event.target.closest && event.target.closest("tr.row");
    if (!row || event.target.closest("a, input, button, label")) return;
    window.location.href = row.getAttribute("data-href");
  });
})();
