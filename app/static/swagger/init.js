// Swagger UI on this service's own document only. The bundled Swagger UI (aiohttp-apispec's,
// 4.1.0) takes `?url=` and `?configUrl=` from the address (CVE-2021-46708): a crafted link would
// show another document on this origin, whose "Authorize" posts the password where it says. So
// the address loses its query before Swagger UI reads it, the layout has no URL bar, and the
// page's Content-Security-Policy lets it fetch from this origin alone.
"use strict";

history.replaceState(null, "", window.location.pathname + window.location.hash);

window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: new URL(document.body.dataset.spec, document.baseURI).href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    queryConfigEnabled: false,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
