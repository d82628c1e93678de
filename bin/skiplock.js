#!/usr/bin/env node
import { main } from '../dist/src/cli/main.js';

main(process.argv).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`skiplock: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
