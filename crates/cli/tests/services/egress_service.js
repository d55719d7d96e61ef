// A Node.js service for the egress tests, on Node's built-in http (which
// does not read HTTP_PROXY): for each POST it makes two downstream calls
// to base URLs (reprise's --egress-route listeners), one after the other,
// each carrying the inbound call's trace id in a new span (as
// OpenTelemetry's instrumentation propagates it) and the inbound call's
// request id in its body.
//
// Usage: node egress_service.js PORT FIRST_URL SECOND_URL

const http = require('http');
const crypto = require('crypto');

const [port, first, second] = [Number(process.argv[2]), process.argv[3], process.argv[4]];

function childContext(headers) {
  const parent = headers['traceparent'];
  const out = {};
  if (parent) {
    const parts = parent.split('-');
    if (parts.length === 4 && parts[1].length === 32) {
      out['traceparent'] = `00-${parts[1]}-${crypto.randomBytes(8).toString('hex')}-${parts[3]}`;
      if (headers['tracestate']) out['tracestate'] = headers['tracestate'];
    }
  }
  return out;
}

function call(base, path, requestId, context) {
  return new Promise((resolve) => {
    const body = JSON.stringify({ from: requestId });
    const url = new URL(base + path);
    const request = http.request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...context },
    }, (response) => {
      let text = '';
      response.on('data', (chunk) => { text += chunk; });
      response.on('end', () => resolve([response.statusCode, text]));
    });
    request.on('error', (error) => resolve([599, String(error)]));
    request.end(body);
  });
}

http.createServer((req, res) => {
  req.resume();
  req.on('end', async () => {
    const requestId = req.headers['x-request-id'] || '';
    const context = childContext(req.headers);
    const a = await call(first, '/inventory', requestId, context);
    const b = await call(second, '/charge', requestId, context);
    const body = JSON.stringify({ id: requestId, calls: [a, b] });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
}).listen(port, '127.0.0.1');
