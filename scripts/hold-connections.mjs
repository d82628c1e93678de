#!/usr/bin/env node
// Holds N idle connections to DATABASE_URL (default the local `test` database) open until
// SIGTERM/SIGINT: the "foreign" connections .ci/run keeps open while `npm test` runs, so the
// suite proves it passes on a server it shares.   node scripts/hold-connections.mjs 30
import pg from 'pg';

const n = Number(process.argv[2] ?? 30);
const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const clients = [];
for (let i = 0; i < n; i++) {
  const client = new pg.Client({ connectionString: url, application_name: 'foreign connection' });
  client.on('error', () => undefined);
  await client.connect();
  clients.push(client);
}
process.stdout.write(`holding ${n} connections to the test server\n`);
const end = async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  process.exit(0);
};
process.on('SIGTERM', end);
process.on('SIGINT', end);
setInterval(() => undefined, 1 << 30);
