// Every page. A form the server refused comes back as a new page with focus
// at its top, the refusal possibly a screen or more below (a phone's order
// form): focus goes to the first field marked invalid, or, when the refusal
// is about the whole form, to its alert, shown with the words around it.
(function () {
  "use strict";
  // The sticky header's height, for what focus scrolls to to stop below it
  // (site.css's scroll-padding-top): the navigation wraps at widths and with
  // names no fixed value foresees.
  var header = document.querySelector(".site-header");
  if (header && window.ResizeObserver) {
    new ResizeObserver(function () {
      document.documentElement.style.setProperty("--header-height", header.offsetHeight + "px");
    }).observe(header);
  }

  var main = document.getElementById("main");
  if (!main) return;

  function shown(node) { return node.getClientRects().length > 0; }

  var target = Array.from(main.querySelectorAll('[aria-invalid="true"]')).filter(shown)[0] ||
    Array.from(main.querySelectorAll('form [role="alert"]')).filter(shown)[0];
  if (!target) return;
  if (!target.matches("input, select, textarea, button, [tabindex]")) target.setAttribute("tabindex", "-1");
  // The label above and the error below the field in view, not only the field.
  target.focus({ preventScroll: true });
  (target.closest(".field") || target).scrollIntoView({ block: "center" });
})();
