// echo.js: an echo server on Node.js `net` (one event loop). Listens on
// 127.0.0.1:PORT (argv, 0 = the OS picks) and prints the port.
// Benchmark peer, bench/ only.
'use strict';
const net = require('net');

const server = net.createServer((sock) => {
  sock.setNoDelay(true);
  sock.on('error', () => {});
  sock.on('data', (d) => sock.write(d));
});
server.listen({ host: '127.0.0.1', port: Number(process.argv[2] || 0), backlog: 512 }, () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
