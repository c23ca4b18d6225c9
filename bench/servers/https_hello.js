// https_hello.js: the HTTPS "hello" server on Node.js `https` (one process,
// one event loop), bench/servers/http_hello.js over TLS: GET / -> 200
// "hello\n", Content-Type text/plain, Content-Length, keep-alive (a request
// with "Connection: close" gets its reply, then the connection closes).
// TLS settings are Node's defaults. Listens on 127.0.0.1:PORT (0 = the OS
// picks) and prints the port. Benchmark peer, bench/ only.
//   node bench/servers/https_hello.js PORT CERT KEY
'use strict';
const fs = require('fs');
const https = require('https');

const [port, cert, key] = process.argv.slice(2);
const BODY = Buffer.from('hello\n');
const HEADERS = { 'Content-Type': 'text/plain', 'Content-Length': BODY.length };

const server = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
  if (req.method === 'GET' && req.url === '/') {
    res.writeHead(200, HEADERS);
    res.end(BODY);
  } else {
    res.writeHead(404, { 'Content-Type': 'text/plain', 'Content-Length': 10 });
    res.end('not found\n');
  }
});
server.keepAliveTimeout = 5000;   // netlua's keepalive_timeout default
server.listen({ host: '127.0.0.1', port: Number(port || 0), backlog: 512 }, () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
