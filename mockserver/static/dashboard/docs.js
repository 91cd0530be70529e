// Swagger UI (vendored, no CDN) rendering the mock's own copy of the spec.
(function () {
  'use strict';
  const control = new URLSearchParams(location.search).get('spec') === 'control';
  const url = control ? 'control.yaml' : 'openapi.yaml';
  document.getElementById('raw').href = url;
  document.title = (control ? 'Control API' : 'Session API') + ' · cumulonimbus-mock';
  window.ui = SwaggerUIBundle({
    url,
    dom_id: '#swagger-ui',
    deepLinking: true,
    displayOperationId: true,
    docExpansion: 'list',
    validatorUrl: null, // the default would call out to a public validator
    presets: [SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout',
    requestInterceptor: (req) => {
      // "Try it out" on the control API: pass the dashboard's token along.
      const token = sessionStorage.getItem('mockToken');
      if (control && token) req.headers['X-Mock-Token'] = token;
      return req;
    },
  });
})();
