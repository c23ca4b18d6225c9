// time.js: the time server on Node.js `net`: send the local time as Python's
// str(datetime.now()) prints it, then close. Listens on 127.0.0.1:PORT
// (argv, 0 = the OS picks) and prints the port. Benchmark peer, bench/ only.
'use strict';
const net = require('net');

const pad = (n, w) => String(n).padStart(w, '0');
function now() {
  const d = new Date();
  const us = Math.floor((performance.timeOrigin + performance.now()) * 1000) % 1000000;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1, 2)}-${pad(d.getDate(), 2)} ` +
    `${pad(d.getHours(), 2)}:${pad(d.getMinutes(), 2)}:${pad(d.getSeconds(), 2)}.${pad(us, 6)}`;
}

const server = net.createServer((sock) => {
  sock.on('error', () => {});
  sock.end(now());
});
server.listen({ host: '127.0.0.1', port: Number(process.argv[2] || 0), backlog: 512 }, () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
