// SPDX-License-Identifier: Apache-2.0
// MQTT.js in headless Chromium (playwright-core driving /usr/bin/chromium).
// The page is served from a local HTTP server, so the WebSocket carries a
// real Origin (http://127.0.0.1:PORT). Prints "OK ..." and exits 0 when the
// page wrote the result into the DOM, else "ERROR ..." and exits 1.
//   node browser_client.mjs ws://127.0.0.1:8083/mqtt [--version 4] [--ignore-cert]
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { parseArgs, roundtripSource } from './common.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = parseArgs(process.argv.slice(2));
const bundle = fs.readFileSync(path.join(here, 'node_modules/mqtt/dist/mqtt.min.js'));
const page = `<!doctype html><html><body><pre id="result"></pre>
<script src="/mqtt.min.js"></script>
<script>
  const args = ${JSON.stringify({ url: args.url, version: args.version, topic: args.topic })};
  const roundtrip = ${roundtripSource};
  const out = document.getElementById('result');
  roundtrip(mqtt, args.url, { protocolVersion: args.version, clientId: 'mqttjs-browser-' + Date.now() }, args.topic)
    .then((ok) => { out.textContent = ok; }, (err) => { out.textContent = 'ERROR ' + err.message; });
</script></body></html>`;

const server = http.createServer((req, res) => {
  if (req.url === '/mqtt.min.js') {
    res.writeHead(200, { 'Content-Type': 'text/javascript' });
    res.end(bundle);
  } else {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end(page);
  }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const origin = 'http://127.0.0.1:' + server.address().port;
console.log('ORIGIN ' + origin);

const launchArgs = ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'];
if (args.ignoreCert) launchArgs.push('--ignore-certificate-errors');
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: launchArgs });
let result;
try {
  const tab = await browser.newPage();
  tab.on('console', (m) => console.error('page: ' + m.text()));
  await tab.goto(origin + '/');
  await tab.waitForFunction(() => document.getElementById('result').textContent !== '', null,
    { timeout: args.timeout });
  result = await tab.textContent('#result');
} catch (e) {
  result = 'ERROR ' + e.message.split('\n')[0];
} finally {
  await browser.close();
  server.close();
}
console.log(result);
process.exit(result.startsWith('OK ') ? 0 : 1);
