/** Small measuring helpers shared by the tests and the chaos harness. */
import { createServer } from 'node:net';

/**
 * Largest number of [start, end] intervals open at once, per key. An interval that ends at
 * the very instant another starts does not overlap it.
 */
export function maxOverlap(intervals: ReadonlyArray<{ key: string; start: number; end: number }>): Map<string, number> {
  const byKey = new Map<string, Array<[number, number]>>();
  for (const i of intervals) {
    let events = byKey.get(i.key);
    if (!events) byKey.set(i.key, (events = []));
    events.push([i.start, 1], [i.end, -1]);
  }
  const out = new Map<string, number>();
  for (const [key, events] of byKey) {
    events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let open = 0;
    let max = 0;
    for (const [, d] of events) max = Math.max(max, (open += d));
    out.set(key, max);
  }
  return out;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}
