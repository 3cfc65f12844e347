// Swagger UI for the merged document. A file of its own, not an inline script, so that the
// page's Content-Security-Policy can say script-src 'self'. The URL is relative to
// /_gateway/docs, so the page works under any prefix a proxy puts in front.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi/app.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    // Each operation's x-gateway (who serves it today, its flag and state) in its details.
    showExtensions: true,
    // No call to an outside validator: the page talks to this origin only.
    validatorUrl: null,
    // The admin's session cookie goes with the document request and with "Try it out".
    withCredentials: true,
  });
});
