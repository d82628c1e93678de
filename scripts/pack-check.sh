#!/usr/bin/env bash
# Uses skiplock the way another project would: packs it as npm would publish it (`npm pack`),
# installs the tarball in a scratch project (from the network: its dependencies only), and
# from there imports the library (migrate a scratch schema, enqueue one job, run a Worker until
# the job has succeeded, drop the schema) and runs the installed CLI (`npx skiplock --version`).
# Prints "pack check: ok"; exits non-zero on any failure. Run by .ci/run.
#
#   DATABASE_URL  default postgres://postgres@127.0.0.1:5432/postgres
set -euo pipefail
cd "$(dirname "$0")/.."

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
version=$(node -p "require('./package.json').version")
work=$(mktemp -d "${TMPDIR:-/tmp}/skiplock-pack.XXXXXX")
trap 'rm -rf "$work"' EXIT

fail() {
  echo "pack check: $*" >&2
  exit 1
}

# The tarball holds what package.json "files" names; dist/ is built here, not by the installer.
npm run --silent build
tarball=$(npm pack --ignore-scripts --silent --pack-destination "$work" | tail -n 1)
[ -f "$work/$tarball" ] || fail "npm pack made no tarball (got \"$tarball\")"
contents=$(tar -tzf "$work/$tarball")
for file in package/bin/skiplock.js package/dist/src/index.js package/dist/src/index.d.ts package/dist/src/cli/main.js \
  package/sql/migrations/0001_init.sql package/sql/queries/jobs.sql; do
  grep -qx "$file" <<<"$contents" || fail "$file is missing from $tarball"
done

mkdir "$work/app"
cd "$work/app"
cat >package.json <<'EOF'
{ "name": "skiplock-pack-check", "version": "0.0.0", "private": true, "type": "module" }
EOF
npm install --no-audit --no-fund --loglevel=error "$work/$tarball" >/dev/null

installed=$(npx --no -- skiplock --version)
[ "$installed" = "$version" ] || fail "npx skiplock --version printed \"$installed\", not $version"

cat >check.js <<'EOF'
import { randomBytes } from 'node:crypto';
import { Producer, Worker, createPool, migrate } from 'skiplock';

const connectionString = process.env.DATABASE_URL;
const schema = `pack_check_${randomBytes(4).toString('hex')}`;
const pool = createPool({ connectionString, max: 2 });
let worker;
try {
  await migrate(pool, schema);
  const producer = new Producer({ pool, schema });
  worker = new Worker({ connectionString, schema, concurrency: 1, pollIntervalMs: 200, tasks: { 'pack-check': () => undefined } });
  await worker.start();
  const { id } = await producer.enqueue('pack-check', { from: 'the tarball' });
  const deadline = Date.now() + 30_000;
  for (;;) {
    const job = await producer.getJob(id);
    if (job?.status === 'succeeded') break;
    if (Date.now() > deadline) throw new Error(`job ${id} is ${job?.status ?? 'gone'} after 30 s, not succeeded`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
} finally {
  await worker?.stop();
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch((err) => {
    console.error(`could not drop schema ${schema}: ${err.message}`);
    process.exitCode = 1;
  });
  await pool.end();
}
EOF
node check.js || fail "the library from the tarball did not run a job (see above)"
echo "pack check: ok"
