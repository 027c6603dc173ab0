// Renders the AsyncAPI document served beside this page (/api/docs/asyncapi.json) with the
// vendored standalone bundle of the AsyncAPI React component.
(function () {
  "use strict";
  var root = document.getElementById("asyncapi");
  AsyncApiStandalone.render({
    schema: { url: root.getAttribute("data-document"), requestOptions: { headers: { Accept: "application/json" } } },
    config: { show: { sidebar: true } },
  }, root);
}());
