// Every page. A stored picture whose file is gone (a database restored newer
// than the bucket, an object deleted by hand or by a lifecycle rule) looks
// as the page looks without a picture, not like a broken image. A picture
// marked data-fallback says what stands in for it: a letter, shown in
// site.css's circle (what token_card.html shows for a token without a logo),
// or, when empty, nothing. The policy refuses inline onerror handlers and
// error events do not bubble: one listener captures them all, and pictures
// that failed before this script ran are looked for once.
(function () {
  "use strict";
  var placeholders = new WeakMap();

  function fallBack(img) {
    if (!img.hasAttribute("data-fallback") || placeholders.has(img) || !img.isConnected) return;
    var letter = img.getAttribute("data-fallback");
    if (!letter) {
      img.remove();
      return;
    }
    var placeholder = document.createElement("span");
    placeholder.className = img.className + " token-logo-empty";
    placeholder.textContent = letter;
    if (img.alt) {
      placeholder.setAttribute("role", "img");
      placeholder.setAttribute("aria-label", img.alt);
    } else {
      placeholder.setAttribute("aria-hidden", "true");
    }
    // Hidden, not removed: avatar-upload.js gives it the new picture.
    img.hidden = true;
    img.after(placeholder);
    placeholders.set(img, placeholder);
  }

  document.addEventListener("error", function (event) {
    if (event.target instanceof HTMLImageElement) fallBack(event.target);
  }, true);
  document.addEventListener("load", function (event) {
    var img = event.target, placeholder = placeholders.get(img);
    if (!placeholder) return;
    placeholder.remove();
    placeholders.delete(img);
    img.hidden = false;
  }, true);
  document.querySelectorAll("img[data-fallback]").forEach(function (img) {
    if (img.getAttribute("src") && img.complete && img.naturalWidth === 0) fallBack(img);
  });
})();

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
