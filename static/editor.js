// The post editor's image uploads: the chosen file's bytes go to /admin/images/, and
// the answer's Markdown is inserted at the cursor (or its address becomes the cover).
// The post's text never leaves this page, so a refused image loses none of it.
(function () {
  "use strict";
  var form = document.querySelector("form.post-editor");
  if (!form) return;
  var token = form.querySelector('input[name="csrf_token"]').value;
  var status = document.getElementById("image-status");

  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? "field-error" : "notice";
  }

  function upload(file) {
    say("Uploading " + file.name + "…", false);
    return fetch("/admin/images/?name=" + encodeURIComponent(file.name), {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": token, "Content-Type": file.type || "application/octet-stream" },
      body: file,
    }).then(function (res) {
      return res.json().catch(function () {
        return { error: "The upload failed (HTTP " + res.status + ")." };
      }).then(function (data) {
        if (!res.ok || data.error) {
          say(data.error || "The upload failed.", true);
          return null;
        }
        say("Uploaded " + file.name + " (" + data.width + "×" + data.height + ").", false);
        return data;
      });
    }, function () {
      say("The upload failed: the server could not be reached.", true);
      return null;
    });
  }

  document.getElementById("image-upload").addEventListener("change", function (e) {
    var input = e.target;
    var file = input.files[0];
    if (!file) return;
    upload(file).then(function (data) {
      input.value = "";
      if (!data) return;
      var body = document.getElementById("body_markdown");
      var start = body.selectionStart || body.value.length;
      var end = body.selectionEnd || start;
      var text = "\n\n" + data.markdown + "\n\n";
      body.value = body.value.slice(0, start) + text + body.value.slice(end);
    });
  });

  document.getElementById("cover-upload").addEventListener("change", function (e) {
    var input = e.target;
    var file = input.files[0];
    if (!file) return;
    upload(file).then(function (data) {
      input.value = "";
      if (data) document.getElementById("cover_image").value = data.url;
    });
  });
})();
