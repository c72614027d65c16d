// Profile picture upload: preview before sending, progress while sending,
// errors next to the field. Without this script the form posts normally.
(function () {
  "use strict";
  var form = document.getElementById("avatar-form");
  if (!form || !window.FormData || !window.XMLHttpRequest) return;

  var input = form.querySelector('input[type="file"]');
  var preview = document.getElementById("avatar-preview");
  var previewImage = document.getElementById("avatar-preview-image");
  var progress = document.getElementById("avatar-progress");
  var bar = document.getElementById("avatar-progress-bar");
  var submit = document.getElementById("avatar-submit");
  var current = document.getElementById("avatar-current");
  var formErrors = document.getElementById("avatar-form-errors");
  // The page's messages (partials/messages.html): a live region from the
  // start, so that screen readers announce what is written into it.
  var messages = document.querySelector('#main .messages[role="status"]');
  var field = input.closest(".field");
  // The id Django's aria-describedby names for the field's errors.
  var errorId = input.id + "_error";
  // settings.MAX_UPLOAD_SIZE: a larger picture is refused here, unsent.
  var maxSize = parseInt(form.dataset.maxSize, 10);
  // settings.MAX_REQUEST_BODY_SIZE: a larger request is answered 413.
  var maxRequestSize = parseInt(form.dataset.maxRequestSize, 10);
  var previewUrl = null;

  // As storage.images words sizes, so both refusals read the same.
  function formatBytes(count) {
    if (count >= 1024 * 1024) return formatNumber(count / (1024 * 1024)) + " MB";
    if (count >= 1024) return formatNumber(count / 1024) + " KB";
    return count + " bytes";
  }

  function formatNumber(value) {
    return value.toFixed(1).replace(/\.0$/, "");
  }

  function describedBy(add) {
    var ids = (input.getAttribute("aria-describedby") || "").split(" ").filter(function (id) {
      return id && id !== errorId;
    });
    if (add) ids.push(errorId);
    if (ids.length) input.setAttribute("aria-describedby", ids.join(" "));
    else input.removeAttribute("aria-describedby");
  }

  function clearErrors() {
    formErrors.innerHTML = "";
    field.classList.remove("field-invalid");
    input.removeAttribute("aria-invalid");
    describedBy(false);
    var list = field.querySelector("ul.errors");
    if (list) list.remove();
  }

  // The server's own refusal (storage.images), without sending the file.
  function tooLargeError(file) {
    if (!(maxSize > 0) || file.size <= maxSize) return null;
    return {
      message: "The file is too large (" + formatBytes(file.size) + "). The maximum is " +
        formatBytes(maxSize) + ".",
      code: "file_too_large"
    };
  }

  function showErrors(errors) {
    clearErrors();
    var fieldErrors = errors.avatar || [];
    if (fieldErrors.length) {
      var list = document.createElement("ul");
      list.className = "errors";
      list.id = errorId;
      fieldErrors.forEach(function (error) {
        var item = document.createElement("li");
        item.textContent = error.message;
        list.appendChild(item);
      });
      field.appendChild(list);
      field.classList.add("field-invalid");
      input.setAttribute("aria-invalid", "true");
      describedBy(true);
      input.focus();
    }
    (errors.__all__ || []).forEach(function (error) {
      var alert = document.createElement("div");
      alert.className = "alert";
      alert.setAttribute("role", "alert");
      alert.textContent = error.message;
      formErrors.appendChild(alert);
    });
  }

  // The button, disabled while sending, lost focus: it gets it back unless
  // focus went somewhere else meanwhile (to the field in error).
  function uploadEnded() {
    progress.hidden = true;
    submit.disabled = false;
    if (!document.activeElement || document.activeElement === document.body) submit.focus();
  }

  input.addEventListener("change", function () {
    clearErrors();
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    var file = input.files && input.files[0];
    if (!file) {
      preview.hidden = true;
      return;
    }
    previewUrl = URL.createObjectURL(file);
    previewImage.src = previewUrl;
    preview.hidden = false;
    var tooLarge = tooLargeError(file);
    if (tooLarge) showErrors({ avatar: [tooLarge] });
  });
  // A file the browser cannot show (not an image) hides the preview; the
  // server still gives the reason when the form is sent.
  previewImage.addEventListener("error", function () { preview.hidden = true; });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    clearErrors();
    messages.replaceChildren();
    var file = input.files && input.files[0];
    var tooLarge = file && tooLargeError(file);
    if (tooLarge) {
      showErrors({ avatar: [tooLarge] });
      return;
    }
    var request = new XMLHttpRequest();
    request.open("POST", form.action || window.location.href);
    request.setRequestHeader("X-Requested-With", "XMLHttpRequest");
    request.responseType = "json";
    request.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) bar.value = Math.round((e.loaded / e.total) * 100);
    });
    request.addEventListener("load", function () {
      var body = request.response || {};
      if (request.status === 200 && body.avatar_url) {
        current.src = body.avatar_url;
        document.querySelectorAll("img.avatar-sm").forEach(function (img) {
          img.src = body.avatar_url;
        });
        preview.hidden = true;
        form.reset();
        var done = document.createElement("p");
        done.className = "message message-success";
        done.textContent = "Your profile picture was updated.";
        messages.replaceChildren(done);
      } else if (body.errors) {
        showErrors(body.errors);
      } else if (request.status === 413) {
        // Refused by its size before the app read it (core.middleware, nginx):
        // the answer is a page, not JSON. Its limit, as that page words it.
        var limit = maxRequestSize > 0 ? ": the server accepts at most " + formatBytes(maxRequestSize) : "";
        showErrors({ avatar: [{ message: "The file is too large to send" + limit + ". Nothing was changed." }] });
      } else if (request.status === 429) {
        // nginx's per-client limit answers in plain text, before the app.
        showErrors({ __all__: [{ message: "Too many uploads in a short time. Please try again in a minute." }] });
      } else {
        showErrors({ __all__: [{ message: "The upload failed (error " + request.status + "). Please try again." }] });
      }
      uploadEnded();
    });
    request.addEventListener("error", function () {
      showErrors({ __all__: [{ message: "The connection was lost during the upload. Please try again." }] });
      uploadEnded();
    });
    bar.value = 0;
    progress.hidden = false;
    submit.disabled = true;
    request.send(new FormData(form));
  });
})();
