// An https JSON downstream for the egress tests, on Node's built-in https:
// answers every POST with the path and the body it received. Calls to
// /inventory wait (up to 20 s) until BARRIER of them are waiting at once,
// so that the calls of concurrent inbound calls interleave; their answers
// say how many were let go together ("together").
//
// Usage: node https_downstream.js PORT CERT KEY BARRIER

const fs = require('fs');
const https = require('https');

const [port, cert, key, barrier] = [
  Number(process.argv[2]), process.argv[3], process.argv[4], Number(process.argv[5]),
];

let waiting = [];

// Runs `release(together)` once `barrier` calls wait, or after 20 s
// (alone, then).
function gate(release) {
  if (barrier <= 1) return release(1);
  let done = false;
  const once = (together) => { if (!done) { done = true; release(together); } };
  waiting.push(once);
  setTimeout(() => {
    waiting = waiting.filter((go) => go !== once);
    once(1);
  }, 20000);
  if (waiting.length >= barrier) {
    const all = waiting;
    waiting = [];
    all.forEach((go) => go(all.length));
  }
}

https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const reply = (together) => {
      const body = JSON.stringify({ path: req.url, got: Buffer.concat(chunks).toString(), together });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (req.url.endsWith('/inventory')) gate(reply); else reply(1);
  });
}).listen(port, '127.0.0.1');
