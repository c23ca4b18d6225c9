// download.js: the tutorial's downloader on Node.js's built-in fetch: get the
// JSON index, fetch every picUrl at once, write each file.
// Usage: node download.js API_URL OUT_DIR. Benchmark peer, bench/ only.
'use strict';
const fs = require('fs/promises');
const path = require('path');

async function main() {
  const [api, out] = process.argv.slice(2);
  const index = await (await fetch(api)).json();
  await Promise.all(index.newslist.map(async ({ picUrl }) => {
    const resp = await fetch(picUrl);
    if (!resp.ok) throw new Error(`${picUrl}: ${resp.status}`);
    const name = picUrl.slice(picUrl.lastIndexOf('/') + 1);
    await fs.writeFile(path.join(out, name), Buffer.from(await resp.arrayBuffer()));
  }));
}

main().catch((e) => { console.error(e); process.exit(1); });
