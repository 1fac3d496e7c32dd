/**
 * The worker image builds anywhere: the stack builds a linux/arm64 image, and on an x86 machine
 * without QEMU any `RUN` in an arm64 stage fails. So every stage that runs a command runs on the
 * build platform, and the final stage only copies files (issue 15 item 3, "The Dockerfile's final
 * stage runs no npm").
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseDockerfile, readDockerignore } from '#test/helpers/dockerfile.ts';

const REPO = new URL('../../', import.meta.url).pathname;

describe('the worker Dockerfile', () => {
  const all = parseDockerfile(readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8'));

  it('runs every command on the build platform, never under emulation', () => {
    const running = all.filter((s) => s.instructions.some((i) => /^RUN\s/i.test(i)));

    expect(running.map((s) => s.name)).toEqual(['build', 'deps']);
    for (const s of running) expect(s.from, s.name).toMatch(/--platform=\$BUILDPLATFORM/);
  });

  it('bundles the address claim beside the worker (the address-claim container runs dist/claim-address.mjs)', () => {
    const build = all.find((s) => s.name === 'build')!;
    const esbuild = build.instructions.find((i) => /^RUN .*esbuild\s/.test(i))!;

    expect(esbuild).toMatch(/\sclaim-address=media-worker\/image\/claim-address\.ts\s/);
    expect(esbuild).toMatch(/--outdir=dist .*--out-extension:\.js=\.mjs/);
  });

  it('has a final stage that only copies files: no RUN, no npm', () => {
    const final = all.at(-1)!;

    expect(final.from).not.toMatch(/--platform/); // the target platform: linux/arm64 in AWS
    expect(final.instructions.filter((i) => /^RUN\s/i.test(i))).toEqual([]);
    expect(final.instructions.join('\n')).not.toMatch(/\bnpm\b/);
    expect(final.instructions).toContain('COPY --from=deps /app/node_modules ./node_modules');
    expect(final.instructions).toContain('USER node');
  });

  it('copies only what .dockerignore lets into the build context (docker build fails otherwise)', async () => {
    const ignored = await readDockerignore(REPO);
    const sources = all
      .flatMap((s) => s.instructions)
      .filter((i) => /^COPY\s/i.test(i) && !/--from=/.test(i))
      .flatMap((i) => i.split(/\s+/).slice(1, -1));
    const filesOf = (path: string): string[] =>
      statSync(join(REPO, path)).isDirectory()
        ? readdirSync(join(REPO, path), { recursive: true, withFileTypes: true })
            .filter((e) => e.isFile())
            .map((e) => join(e.parentPath, e.name).slice(REPO.length))
        : [path];

    expect(sources).toEqual(expect.arrayContaining(['package.json', 'core', 'adapters', 'media-worker']));
    for (const source of sources) expect(filesOf(source).filter(ignored), source).toEqual([]);
  });
});
