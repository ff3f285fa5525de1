// Swagger UI over this server's OpenAPI document (a file, not an inline script: the CSP allows only 'self' scripts).
/* global window, SwaggerUIBundle */
window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui', deepLinking: true });
