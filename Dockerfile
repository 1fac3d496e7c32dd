# syntax=docker/dockerfile:1
# The media worker image (linux/arm64 in AWS; `cdk deploy` builds it from this repository).
# Build stage: bundle the worker's TypeScript with esbuild (packages stay external). The source map
# keeps only the mappings (no embedded sources): stack traces still name file:line, and the idle
# worker's RSS is ~15 MB lower (--enable-source-maps parses and keeps the whole map; issue 13 item 3).
# Runtime stage: Node 22, production dependencies only, non-root, no shell entrypoint.

FROM --platform=$BUILDPLATFORM node:22-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# No install scripts: the build needs esbuild's JS shim and platform binary only.
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json ./
COPY core ./core
COPY adapters ./adapters
COPY media-worker ./media-worker
# Two bundles side by side: the worker, and the media thread it starts per vCPU (MEDIA_THREADS),
# which the worker finds beside itself as dist/media-thread.mjs.
RUN node_modules/.bin/esbuild worker=media-worker/image/entrypoint.ts media-thread=media-worker/src/threads/thread-main.ts \
      --bundle --platform=node --format=esm --target=node22 --packages=external \
      --sourcemap --sources-content=false --outdir=dist --out-extension:.js=.mjs

FROM node:22-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only; none of them has an install script (werift, @evan/opus ship JS/prebuilt binaries).
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts && npm cache clean --force
COPY --from=build /src/dist ./dist
USER node
# ECS runs an init process (initProcessEnabled) as PID 1, which forwards SIGTERM to node: the worker drains.
ENTRYPOINT ["node", "--enable-source-maps", "dist/worker.mjs"]
