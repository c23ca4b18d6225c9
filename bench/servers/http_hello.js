// http_hello.js: the HTTP "hello" server on Node.js `http` (one process, one
// event loop): GET / -> 200 "hello\n", Content-Type text/plain,
// Content-Length, keep-alive (Node's default for HTTP/1.1). Listens on
// 127.0.0.1:PORT (argv, 0 = the OS picks) and prints the port.
// Benchmark peer, bench/ only.
'use strict';
const http = require('http');

const BODY = Buffer.from('hello\n');
const HEADERS = { 'Content-Type': 'text/plain', 'Content-Length': BODY.length };

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/') {
    res.writeHead(200, HEADERS);
    res.end(BODY);
  } else {
    res.writeHead(404, { 'Content-Type': 'text/plain', 'Content-Length': 10 });
    res.end('not found\n');
  }
});
server.keepAliveTimeout = 5000;   // netlua's keepalive_timeout default
server.listen({ host: '127.0.0.1', port: Number(process.argv[2] || 0), backlog: 512 }, () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
