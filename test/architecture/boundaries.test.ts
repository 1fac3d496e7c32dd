/**
 * The dependency rules of docs/architecture.md § "Code layout", checked on every import of every
 * source file (tests excluded):
 * - `core/` is the shared domain: it imports no other project folder and no AWS SDK, Powertools or
 *   middy;
 * - `adapters/` import only the core;
 * - the two deployables (`functions/`, `media-worker/`) import the core and adapters, never each
 *   other;
 * - nothing imports `lib/` (CDK) at run time: only `bin/` and `lib/` itself;
 * - `meta-simulator/` imports nothing of the product, so it stays an independent oracle.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');
const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { imports: Record<string, string> };

/** Top-level folders a folder may import from (besides its own). `*` = any. */
const ALLOWED: Record<string, readonly string[] | '*'> = {
  core: [],
  adapters: ['core'],
  functions: ['core', 'adapters'],
  'media-worker': ['core', 'adapters'],
  'meta-simulator': [],
  lib: ['core', 'adapters', 'functions', 'media-worker'],
  bin: ['lib'],
  local: ['core', 'adapters', 'functions', 'media-worker', 'meta-simulator'],
  scripts: ['core', 'adapters', 'functions', 'media-worker', 'meta-simulator', 'local', 'lib'],
  bench: ['core', 'adapters', 'functions', 'media-worker', 'meta-simulator', 'local', 'test'],
};
/** npm packages the core may use: the domain has no cloud SDK and no Lambda runtime. */
const CORE_PACKAGES = ['zod', 'libphonenumber-js'];

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
    .map((e) => path.relative(ROOT, path.join(e.parentPath, e.name)));
}

/** Every module specifier of a file: static imports and exports, `import()` and `import type`. */
function specifiers(source: string): string[] {
  const found: string[] = [];
  const re = /(?:\bfrom\s+|\bimport\s*\(\s*|^\s*import\s+)(['"])([^'"]+)\1/gm;
  for (let m = re.exec(source); m; m = re.exec(source)) found.push(m[2]!);
  return found;
}

/** The repository path a specifier points at, or the npm package name. */
function resolve(from: string, spec: string): { folder: string } | { pkg: string } {
  if (spec.startsWith('.')) {
    const target = path.normalize(path.join(path.dirname(from), spec));
    return { folder: target.split(path.sep)[0]! };
  }
  if (spec.startsWith('#')) {
    const key = Object.keys(pkg.imports).find((k) => spec.startsWith(k.replace('*', '')));
    if (!key) throw new Error(`${from}: ${spec} matches no "imports" entry of package.json`);
    return { folder: path.normalize(pkg.imports[key]!).split(path.sep)[0]! };
  }
  const parts = spec.split('/');
  return { pkg: spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]! };
}

function violations(): string[] {
  const out: string[] = [];
  for (const [folder, allowed] of Object.entries(ALLOWED)) {
    for (const file of sourceFiles(folder)) {
      for (const spec of specifiers(readFileSync(path.join(ROOT, file), 'utf8'))) {
        const target = resolve(file, spec);
        if ('pkg' in target) {
          if (folder === 'core' && !target.pkg.startsWith('node:') && !CORE_PACKAGES.includes(target.pkg))
            out.push(`${file}: the core imports the package ${target.pkg}`);
          continue;
        }
        if (target.folder === folder || allowed === '*' || allowed.includes(target.folder)) continue;
        out.push(`${file}: ${folder}/ may not import ${target.folder}/ (${spec})`);
      }
    }
  }
  return out;
}

describe('Architecture: who may import whom', () => {
  it('every source folder keeps to its allowed dependencies', () => {
    expect(violations()).toEqual([]);
  });

  it('the rule sees relative, subpath and dynamic imports alike', () => {
    const src = `import { a } from '../lib/x.ts';\nimport type { B } from '#core/b.ts';\nconst m = await import('#worker/main.ts');\nexport { c } from './c.ts';`;
    expect(specifiers(src)).toEqual(['../lib/x.ts', '#core/b.ts', '#worker/main.ts', './c.ts']);
    expect(resolve('functions/webhook/handler.ts', '#worker/main.ts')).toEqual({ folder: 'media-worker' });
    expect(resolve('core/calls/intake.ts', '../../lib/metrics.ts')).toEqual({ folder: 'lib' });
    expect(resolve('core/x.ts', '@aws-sdk/client-sqs/foo')).toEqual({ pkg: '@aws-sdk/client-sqs' });
  });
});
