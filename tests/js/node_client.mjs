// SPDX-License-Identifier: Apache-2.0
// MQTT.js in Node over ws:// or wss://: prints "OK ..." and exits 0 when
// both messages came back, else prints "ERROR ..." and exits 1.
//   node node_client.mjs ws://127.0.0.1:8083/mqtt [--version 4] [--ca ca.crt]
import fs from 'node:fs';
import mqtt from 'mqtt';
import { parseArgs, roundtripSource } from './common.mjs';

const args = parseArgs(process.argv.slice(2));
const opts = { protocolVersion: args.version, clientId: 'mqttjs-node-' + process.pid };
if (args.ca) opts.ca = fs.readFileSync(args.ca);
const roundtrip = eval(roundtripSource);
const timer = setTimeout(() => { console.log('ERROR timeout'); process.exit(1); }, args.timeout);
roundtrip(mqtt, args.url, opts, args.topic).then(
  (ok) => { clearTimeout(timer); console.log(ok); process.exit(0); },
  (err) => { clearTimeout(timer); console.log('ERROR ' + err.message); process.exit(1); });
