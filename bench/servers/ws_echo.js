// ws_echo.js: a WebSocket echo server on Node.js `ws` (found through
// NODE_PATH, build/npm/node_modules: `make deps`), every message sent back
// as it came. Listens on 127.0.0.1:PORT (argv, 0 = the OS picks) and prints
// the port. Benchmark peer, bench/ only.
'use strict';
const WebSocket = require('ws');

const wss = new WebSocket.Server({ host: '127.0.0.1', port: Number(process.argv[2] || 0),
  backlog: 512, perMessageDeflate: false });
wss.on('listening', () => console.log(`listening on 127.0.0.1:${wss.address().port}`));
wss.on('connection', (ws) => {
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
