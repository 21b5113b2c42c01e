// A version page: writes the repository URL into the usage snippet (the page knows where
// it is served from; the build did not) and makes the copy button work.
(function () {
  "use strict";
  const root = document.body.dataset.root;  // relative path from this page to the repo
  document.querySelectorAll(".handle[data-path]").forEach((span) => {
    if (span.dataset.base) return;  // the catalog was built with a fixed base URL
    span.textContent = new URL(root + span.dataset.path, window.location.href).href;
  });
  document.querySelectorAll(".snippet button").forEach((button) => {
    button.addEventListener("click", () => {
      const text = button.parentElement.querySelector("pre").textContent;
      navigator.clipboard.writeText(text).then(
        () => { button.textContent = "Copied"; },
        () => { button.textContent = "Select and copy"; });
    });
  });
})();
