/**
 * A Dockerfile build without a container engine, for the worker image's rehearsal
 * (test/interop/image/worker-image.test.ts; issue 15 item 3): no engine here can pull base images,
 * so the rehearsal follows the Dockerfile itself, instruction by instruction, in a directory per
 * stage. The Dockerfile stays the one description of the image: its COPY lines (filtered by
 * `.dockerignore`, as the engine filters the build context), its RUN commands (run with `sh -c`
 * in the stage's WORKDIR), its ENV, USER and ENTRYPOINT. What the rehearsal cannot give is the
 * base image's own files: commands run on this machine's `node`/`npm` (the test checks the Node
 * major matches the base image's tag) and as this user, not `USER`.
 *
 * Supported: FROM (with `--platform` and `AS`), WORKDIR, COPY (with `--from=<stage>`), RUN (shell
 * form), ENV, USER, ENTRYPOINT and CMD (exec form). Anything else fails the rehearsal by name, so
 * a new instruction is never silently skipped.
 */
import { spawn } from 'node:child_process';
import { cp, lstat, mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { basename, join, posix, relative } from 'node:path';

/** One stage: its FROM line, name and instructions (continuations joined, comments dropped). */
export interface DockerStage {
  readonly from: string;
  /** The base image, e.g. `node:22-bookworm-slim`. */
  readonly image: string;
  readonly name: string;
  readonly instructions: string[];
}

/** Splits a Dockerfile into stages (continuation lines joined, comments dropped). */
export function parseDockerfile(text: string): DockerStage[] {
  const lines = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const out: DockerStage[] = [];
  for (const line of lines) {
    if (/^FROM\s/i.test(line)) {
      const words = line
        .split(/\s+/)
        .slice(1)
        .filter((w) => !w.startsWith('--'));
      out.push({ from: line, image: words[0] ?? '', name: /\sAS\s+(\S+)$/i.exec(line)?.[1] ?? '', instructions: [] });
    } else {
      const stage = out.at(-1);
      if (!stage) throw new Error(`Dockerfile: "${line}" before the first FROM`);
      stage.instructions.push(line);
    }
  }
  return out;
}

/** The final stage's file system and how the image starts. */
export interface RehearsedImage {
  /** Host directory standing for the final stage's WORKDIR (where the entrypoint runs). */
  readonly workdir: string;
  /** ENV of the final stage. */
  readonly env: Record<string, string>;
  /** ENTRYPOINT (exec form), then CMD. */
  readonly entrypoint: readonly string[];
  /** USER of the final stage (not applied: the rehearsal runs as this user). */
  readonly user?: string;
  readonly stages: readonly DockerStage[];
}

/** Options of {@link rehearseDockerBuild}. */
export interface RehearsalOptions {
  /** The build context (the repository). */
  readonly context: string;
  /** @default `<context>/Dockerfile` */
  readonly dockerfile?: string;
  /** An empty directory: each stage's file system is `<into>/<stage name or index>`. */
  readonly into: string;
  /** Environment of RUN commands besides the stage's ENV (the base image's PATH and HOME stand here). */
  readonly runEnv: Record<string, string>;
  /** Each RUN's output, for the test's log. */
  readonly onOutput?: (stage: string, chunk: string) => void;
}

/**
 * Builds every stage of the Dockerfile in order and returns the final one.
 * @throws Error naming the stage and instruction that failed
 */
export async function rehearseDockerBuild(options: RehearsalOptions): Promise<RehearsedImage> {
  const stages = parseDockerfile(await readFile(options.dockerfile ?? join(options.context, 'Dockerfile'), 'utf8'));
  const ignore = await readDockerignore(options.context);
  const roots = new Map<string, string>();
  let last: RehearsedImage | undefined;
  for (const [index, stage] of stages.entries()) {
    const id = stage.name || String(index);
    const root = join(options.into, id);
    if (roots.has(stage.image)) await cp(roots.get(stage.image)!, root, { recursive: true, verbatimSymlinks: true });
    await mkdir(root, { recursive: true });
    roots.set(id, root);
    let workdir = '/';
    const env: Record<string, string> = {};
    const entrypoint: string[] = [];
    let user: string | undefined;
    const host = (containerPath: string) => join(root, posix.resolve(workdir, containerPath));
    for (const instruction of stage.instructions) {
      const [, keyword = '', rest = ''] = /^(\S+)\s*(.*)$/.exec(instruction) ?? [];
      const fail = (why: string) => new Error(`Dockerfile stage ${id}: ${instruction}: ${why}`);
      switch (keyword.toUpperCase()) {
        case 'WORKDIR':
          workdir = posix.resolve(workdir, rest);
          await mkdir(host(workdir), { recursive: true });
          break;
        case 'ENV':
          for (const [, k, v] of rest.matchAll(/(\w+)=("[^"]*"|\S+)/g)) env[k!] = v!.replace(/^"|"$/g, '');
          break;
        case 'USER':
          user = rest;
          break;
        case 'ENTRYPOINT':
        case 'CMD':
          if (!rest.startsWith('[')) throw fail('only the exec form is rehearsed');
          entrypoint.push(...(JSON.parse(rest) as string[]));
          break;
        case 'COPY': {
          const words = rest.split(/\s+/);
          const flags = words.filter((w) => w.startsWith('--'));
          const [dest, ...sources] = words.filter((w) => !w.startsWith('--')).reverse();
          if (!dest || sources.length === 0) throw fail('COPY needs a source and a destination');
          const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
          if (flags.some((f) => !f.startsWith('--from='))) throw fail('only --from is rehearsed');
          const fromRoot = from === undefined ? undefined : roots.get(from);
          if (from !== undefined && !fromRoot) throw fail(`no earlier stage ${from}`);
          const target = host(dest);
          const intoDir = dest.endsWith('/') || sources.length > 1;
          for (const source of sources.reverse()) {
            const src = fromRoot ? join(fromRoot, posix.resolve('/', source)) : join(options.context, source);
            const isDir = (await stat(src).catch(() => undefined))?.isDirectory();
            if (isDir === undefined) throw fail(`${source} not found`);
            // The engine walks into an ignored directory when an exception may match inside it.
            const inContext = async (path: string) =>
              fromRoot !== undefined || (await lstat(path)).isDirectory() || !ignore(relative(options.context, path));
            if (!fromRoot && !(isDir ? await someFile(src, inContext) : await inContext(src))) {
              throw fail(`${source} is not in the build context (.dockerignore)`);
            }
            const to = isDir || !intoDir ? target : join(target, basename(src));
            await cp(src, to, { recursive: true, verbatimSymlinks: true, filter: inContext });
          }
          break;
        }
        case 'RUN':
          if (rest.startsWith('[') || rest.startsWith('--')) throw fail('only the plain shell form is rehearsed');
          await run(rest, host(workdir), { ...options.runEnv, ...env }, (chunk) => options.onOutput?.(id, chunk)).catch(
            (error: unknown) => {
              throw fail(String(error instanceof Error ? error.message : error));
            },
          );
          break;
        default:
          throw fail(`${keyword} is not rehearsed`);
      }
    }
    last = { workdir: host(workdir), env, entrypoint, ...(user ? { user } : {}), stages };
  }
  if (!last) throw new Error('Dockerfile has no stage');
  return last;
}

/** Bytes under `dir` (files and symlinks themselves, as an image layer holds them). */
export async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() || entry.isSymbolicLink()) total += (await lstat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}

async function someFile(dir: string, keep: (path: string) => Promise<boolean>): Promise<boolean> {
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isDirectory() && (await keep(join(entry.parentPath, entry.name)))) return true;
  }
  return false;
}

/**
 * `.dockerignore` as the engine reads it: a path (relative to the context) is out of the context
 * when the last pattern matching it or one of its parent directories is not a `!` exception.
 */
export async function readDockerignore(context: string): Promise<(path: string) => boolean> {
  const text = await readFile(join(context, '.dockerignore'), 'utf8').catch(() => '');
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => ({ include: l.startsWith('!'), re: globRegExp(l.replace(/^!/, '').replace(/^\/|\/$/g, '')) }));
  return (path) => {
    if (path === '') return false;
    const parts = path.split('/');
    const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let ignored = false;
    for (const rule of rules) if (candidates.some((c) => rule.re.test(c))) ignored = !rule.include;
    return ignored;
  };
}

function globRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      re += '.*';
      i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function run(command: string, cwd: string, env: Record<string, string>, onOutput: (chunk: string) => void) {
  return new Promise<void>((resolve, reject) => {
    const child = spawn('sh', ['-c', command], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const keep = (chunk: Buffer) => {
      const text = chunk.toString();
      tail = (tail + text).slice(-2000);
      onOutput(text);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`exit ${String(code)}: ${tail.trim()}`))));
  });
}
