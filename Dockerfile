# syntax=docker/dockerfile:1
# The media worker image (linux/arm64 in AWS; `cdk deploy` builds it from this repository).
# Build stage: bundle the worker's TypeScript with esbuild (packages stay external). The source map
# keeps only the mappings (no embedded sources): stack traces still name file:line, and the idle
# worker's RSS is ~15 MB lower (--enable-source-maps parses and keeps the whole map; issue 13 item 3).
# Deps stage: production dependencies, installed on the build platform too. None has an install
# script or a per-platform package: werift, drachtio-srf and the rest are JavaScript, and @evan/opus
# ships its prebuilt libopus addons for linux x64 and arm64 inside the one package (the worker refuses
# to start if the addon does not load; OPUS_ALLOW_WASM). So `cdk deploy` builds the arm64 image on an
# x86 machine without QEMU: no stage runs a command under emulation (issue 15 item 3).
# Runtime stage: Node 22, files copied in, no RUN and no npm; non-root, no shell entrypoint.

FROM --platform=$BUILDPLATFORM node:22-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# No install scripts: the build needs esbuild's JS shim and platform binary only.
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json ./
COPY core ./core
COPY adapters ./adapters
COPY media-worker ./media-worker
# Three bundles side by side: the worker, the media thread it starts per vCPU (MEDIA_THREADS),
# which the worker finds beside itself as dist/media-thread.mjs, and the address claim the
# `address-claim` container runs in fixed-address mode (node dist/claim-address.mjs).
RUN node_modules/.bin/esbuild worker=media-worker/image/entrypoint.ts media-thread=media-worker/src/threads/thread-main.ts claim-address=media-worker/image/claim-address.ts \
      --bundle --platform=node --format=esm --target=node22 --packages=external \
      --sourcemap --sources-content=false --outdir=dist --out-extension:.js=.mjs

FROM --platform=$BUILDPLATFORM node:22-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts

FROM node:22-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
USER node
# ECS runs an init process (initProcessEnabled) as PID 1, which forwards SIGTERM to node: the worker drains.
ENTRYPOINT ["node", "--enable-source-maps", "dist/worker.mjs"]
