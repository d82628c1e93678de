import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Metrics } from './metrics.js';

export interface MetricsServerOptions {
  metrics: Metrics;
  port: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Whether the process is healthy; /healthz answers 200 or 503 with this as JSON. */
  health: () => { ok: boolean; [key: string]: unknown };
}

/** Serves GET /metrics (Prometheus text) and GET /healthz. */
export async function startMetricsServer(options: MetricsServerOptions): Promise<http.Server & { port: number }> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (url === '/metrics') {
      options.metrics.text().then(
        (body) => {
          res.writeHead(200, { 'content-type': options.metrics.registry.contentType }).end(body);
        },
        (err: unknown) => {
          res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${String(err)}\n`);
        },
      );
      return;
    }
    if (url === '/healthz') {
      const health = options.health();
      res.writeHead(health.ok ? 200 : 503, { 'content-type': 'application/json' }).end(`${JSON.stringify(health)}\n`);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics or /healthz\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return Object.assign(server, { port: (server.address() as AddressInfo).port });
}
