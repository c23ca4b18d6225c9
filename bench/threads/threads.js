// threads.js: Node.js's thread micro-benchmark: worker_threads Worker start
// and exit of an empty script, then messages posted from a worker to the
// main thread. Usage: node threads.js SPAWNS MSGS. Prints one RESULT line.
'use strict';
const { Worker } = require('worker_threads');

const spawns = Number(process.argv[2] || 1000);
const msgs = Number(process.argv[3] || 100000);

function once() {
  return new Promise((resolve, reject) => {
    const w = new Worker('', { eval: true });
    w.on('error', reject);
    w.on('exit', resolve);
  });
}

function channel(n) {
  return new Promise((resolve, reject) => {
    const w = new Worker(`const { parentPort, workerData } = require('worker_threads');
      for (let i = 1; i <= workerData; i++) parentPort.postMessage(i);`,
    { eval: true, workerData: n });
    let got = 0;
    w.on('message', () => { got++; });
    w.on('error', reject);
    w.on('exit', () => (got === n ? resolve() : reject(new Error(`got ${got} of ${n}`))));
  });
}

async function main() {
  let t0 = performance.now();
  for (let i = 0; i < spawns; i++) await once();
  const spawnS = (performance.now() - t0) / 1000;
  t0 = performance.now();
  await channel(msgs);
  const chanS = (performance.now() - t0) / 1000;
  console.log(`RESULT spawn_per_s=${(spawns / spawnS).toFixed(1)} msgs_per_s=${(msgs / chanS).toFixed(1)}`);
}

main().catch((e) => { console.error(e); process.exit(1); });
