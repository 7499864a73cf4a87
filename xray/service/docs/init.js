// In a file of its own, not inline: the Content-Security-Policy allows scripts from the service only.
"use strict";
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
