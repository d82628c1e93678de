# skiplock worker image.
#   docker build -t skiplock .
#   docker run --rm -e DATABASE_URL=postgres://user:pass@db:5432/app -p 9464:9464 skiplock
# The default command runs a worker on the task files in /app/workers (applying pending
# migrations first); any other CLI command works too, e.g. `docker run ... skiplock migrate`.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: install everything, compile (npm ci runs prepare -> tsc), then drop dev dependencies
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm ci --no-audit --no-fund \
 && npm prune --omit=dev --no-audit --no-fund

# ---- runtime: production dependencies (tsx included: it loads the .ts task files), dist, bin, sql, workers
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY sql ./sql
COPY workers ./workers
# Files stay owned by root (read-only to the process); tsx writes its cache under /tmp.
USER node
EXPOSE 9464
# /healthz answers 200 while the worker runs (503 while it stops). The worker serves it only
# after it has connected and migrated, hence the start period. Adjust if you change --metrics-port.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9464/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "bin/skiplock.js"]
CMD ["worker", "--metrics-host", "0.0.0.0"]
