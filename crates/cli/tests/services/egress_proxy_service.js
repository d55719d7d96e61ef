// A Node.js service for the egress tests that reaches its downstream
// through the standard proxy variables: undici's fetch with an
// EnvHttpProxyAgent, which reads HTTP_PROXY, HTTPS_PROXY and NO_PROXY
// (Node 20's built-in http and fetch read none of them). An https
// downstream is reached through a CONNECT tunnel; its certificate is
// trusted through NODE_EXTRA_CA_CERTS, as for any Node client.
//
// For each inbound POST whose JSON body names a request id ({"id": ...})
// it makes two calls to DOWNSTREAM, one after the other (/inventory, then
// /charge), each carrying the request id in its body and the inbound
// call's trace id in a new span, as OpenTelemetry's instrumentation
// propagates it (tracestate passed on). It answers 200 with what the
// downstream answered, or 502 saying why a call failed.
//
// Usage: NODE_PATH=.../node_modules node egress_proxy_service.js PORT DOWNSTREAM

const http = require('http');
const crypto = require('crypto');
const { fetch, EnvHttpProxyAgent } = require('undici');

const [port, downstream] = [Number(process.argv[2]), process.argv[3]];
const agent = new EnvHttpProxyAgent();

// The trace context of a call made while serving `headers`: the same
// trace id and flags, a span id of its own.
function childContext(headers) {
  const out = {};
  const parts = (headers['traceparent'] || '').split('-');
  if (parts.length === 4 && /^[0-9a-f]{32}$/.test(parts[1])) {
    out['traceparent'] = `00-${parts[1]}-${crypto.randomBytes(8).toString('hex')}-${parts[3]}`;
    if (headers['tracestate']) out['tracestate'] = headers['tracestate'];
  }
  return out;
}

// One downstream call; throws with the reason when it fails.
async function call(path, requestId, context) {
  const response = await fetch(downstream + path, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json', ...context },
    body: JSON.stringify({ from: requestId }),
    signal: AbortSignal.timeout(20000),
  });
  return [response.status, await response.json()];
}

// "fetch failed: self-signed certificate in certificate chain
// (SELF_SIGNED_CERT_IN_CHAIN)": undici's message and its cause's.
function reason(error) {
  const cause = error && error.cause;
  if (!cause) return String(error && error.message);
  return `${error.message}: ${cause.message}${cause.code ? ` (${cause.code})` : ''}`;
}

function answer(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', async () => {
    let requestId = '';
    try {
      requestId = String(JSON.parse(Buffer.concat(chunks).toString() || '{}').id || '');
    } catch (error) {
      answer(res, 400, { error: `the body is not JSON: ${error.message}` });
      return;
    }
    const context = childContext(req.headers);
    try {
      const calls = [];
      calls.push(await call('/inventory', requestId, context));
      calls.push(await call('/charge', requestId, context));
      answer(res, 200, { id: requestId, calls });
    } catch (error) {
      answer(res, 502, { id: requestId, error: reason(error) });
    }
  });
}).listen(port, '127.0.0.1');
