// SPDX-License-Identifier: Apache-2.0
// What the Node and browser clients share: argument parsing and the
// roundtrip they run (connect, subscribe, publish a small and a 100 KB
// message to themselves, receive both).
export function parseArgs(argv) {
  const args = { url: null, version: 5, ca: null, ignoreCert: false, timeout: 20000, topic: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--version') args.version = Number(argv[++i]);
    else if (a === '--ca') args.ca = argv[++i];
    else if (a === '--ignore-cert') args.ignoreCert = true;
    else if (a === '--timeout') args.timeout = Number(argv[++i]);
    else if (a === '--topic') args.topic = argv[++i];
    else if (!args.url) args.url = a;
    else throw new Error('unexpected argument ' + a);
  }
  if (!args.url) throw new Error('usage: URL [--version 4|5] [--ca FILE] [--ignore-cert] [--topic T]');
  args.topic = args.topic || 'js/' + process.pid + '/' + Date.now();
  return args;
}

// Runs inside the page too (passed as source), so it only uses `mqtt` and
// what it is given. Resolves with "OK <bytes of the big message>" or rejects.
export const roundtripSource = `
(mqtt, url, opts, topic) => new Promise((resolve, reject) => {
  const big = 'x'.repeat(100 * 1024);
  const seen = [];
  const client = mqtt.connect(url, Object.assign({ reconnectPeriod: 0, connectTimeout: 10000 }, opts));
  let finished = false;
  const done = (err, ok) => {
    if (finished) return;
    finished = true;
    client.end(true);
    err ? reject(err) : resolve(ok);
  };
  client.on('error', (e) => done(new Error('mqtt error: ' + e.message)));
  client.on('close', () => done(new Error('connection closed; got ' + seen.length + ' messages')));
  client.on('connect', () => {
    client.subscribe(topic, { qos: 1 }, (err, granted) => {
      if (err) return done(new Error('subscribe: ' + err.message));
      if (!granted.length || granted[0].qos !== 1) return done(new Error('SUBACK ' + JSON.stringify(granted)));
      client.publish(topic, 'hello from MQTT.js', { qos: 1 });
      client.publish(topic, big, { qos: 0 });
    });
  });
  client.on('message', (t, payload) => {
    seen.push(payload.toString());
    if (seen.length === 2) {
      const small = seen.find((p) => p !== big);
      if (small !== 'hello from MQTT.js' || !seen.includes(big)) return done(new Error('wrong messages'));
      done(null, 'OK ' + small + ' / ' + big.length + ' bytes');
    }
  });
})`;
