/**
 * The worker's media threads: one `node:worker_threads` thread per vCPU (`MEDIA_THREADS`), each
 * running the media of the calls pinned to it, so a worker task uses all its cores while SIP and
 * the call scripts stay on the main thread (signalling is cheap, and the PBX reaches one SIP port
 * per task). A call is pinned at its start by {@link pickThread} (the live thread with the fewest
 * calls, below its share of `MAX_CALLS_PER_WORKER`) and stays there for its life.
 *
 * A thread that dies ends each of its calls `bridge-error` (naming the thread, through
 * {@link ThreadedCallMedia.fail}) and is started again, so the worker keeps its capacity; a thread
 * that keeps dying is left down after {@link MAX_RESTARTS} and the worker admits only what the
 * others can take. Each thread reports its event-loop delay, emitted as `EventLoopLag` with the
 * `MediaThread` dimension (the main thread's as `main`).
 */
import { type IntervalHistogram, monitorEventLoopDelay } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { CallMediaFactory } from '../calls/media-port.ts';
import type { WorkerConfig } from '../config.ts';
import type { WorkerMetrics } from '../ops/metrics.ts';
import { pickThread, roomLeft, type ThreadLoad, threadCapacity } from './admission.ts';
import { MediaThreadLostError, MediaThreadTimeoutError, NoMediaThreadError } from './errors.ts';
import {
  type FromThread,
  fromWire,
  LAG_RESOLUTION_MS,
  lagMs,
  type MediaCommand,
  type MediaRequestOp,
  type MediaThreadData,
  type ThreadInspection,
  type ToThread,
} from './protocol.ts';
import { type ThreadChannel, ThreadedCallMedia } from './threaded-call-media.ts';

/** Restarts of one thread after which it is left down. */
export const MAX_RESTARTS = 5;

/** Options of {@link MediaThreadPool.start}. */
export interface MediaThreadPoolOptions {
  /** Threads to run (`MEDIA_THREADS`, ≥ 1). */
  readonly threads: number;
  /** The worker's `MAX_CALLS_PER_WORKER`; each thread takes `ceil(maxCalls / threads)`. */
  readonly maxCalls: number;
  readonly media: WorkerConfig['media'];
  readonly logger: Logger;
  /** Where `EventLoopLag` goes. */
  readonly metrics?: WorkerMetrics;
  /** How often each thread reports its event-loop delay. @default 5000 */
  readonly lagIntervalMs?: number;
  /** How long a request to a thread may take (an ICE/DTLS set-up step, statistics, close). @default 15000 */
  readonly requestTimeoutMs?: number;
}

/** One thread as the pool reports it. */
export interface MediaThreadState extends ThreadLoad {
  readonly index: number;
  /** p99 event-loop delay over the thread's last report, milliseconds. */
  readonly lagP99Ms?: number;
  readonly restarts: number;
}

/** Where the thread's code is: the TypeScript source under tsx, or the image's bundle beside `worker.mjs`. */
function threadEntry(): { url: URL; execArgv: string[] } {
  return import.meta.url.endsWith('.ts')
    ? { url: new URL('./thread-main.ts', import.meta.url), execArgv: ['--import', 'tsx'] }
    : { url: new URL('./media-thread.mjs', import.meta.url), execArgv: [] };
}

/** The worker's media threads; see the module comment. */
export class MediaThreadPool {
  readonly #o: MediaThreadPoolOptions;
  readonly #threads: MediaThread[] = [];
  readonly #capacity: number;
  readonly #mainLag: IntervalHistogram;
  readonly #mainLagTimer: NodeJS.Timeout;
  #nextKey = 1;
  #closing: Promise<void> | undefined;

  private constructor(options: MediaThreadPoolOptions) {
    this.#o = options;
    this.#capacity = threadCapacity(options.maxCalls, options.threads);
    this.#mainLag = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
    this.#mainLag.enable();
    this.#mainLagTimer = setInterval(() => {
      this.#o.metrics?.emit({ EventLoopLag: lagMs(this.#mainLag.percentile(99)) }, { MediaThread: 'main' });
      this.#mainLag.reset();
    }, options.lagIntervalMs ?? 5000);
    this.#mainLagTimer.unref();
  }

  /** Starts `threads` media threads and waits until each is ready. */
  static async start(options: MediaThreadPoolOptions): Promise<MediaThreadPool> {
    if (options.threads < 1) throw new Error('a media thread pool needs at least one thread');
    const pool = new MediaThreadPool(options);
    try {
      await Promise.all(Array.from({ length: options.threads }, (_, i) => pool.#spawn(i, 0)));
    } catch (error) {
      await pool.close();
      throw error;
    }
    options.logger.info({ threads: options.threads, callsPerThread: pool.#capacity }, 'media threads started');
    return pool;
  }

  /** Opens a new call's media on the thread admission picks (see {@link pickThread}). */
  readonly open: CallMediaFactory = (logger, callId) => {
    const loads = this.threads();
    // Admission (`room`) is checked before a call is taken; a call racing in past it still gets
    // the least-loaded live thread rather than failing.
    const index = pickThread(loads) ?? pickThread(loads.map((t) => ({ ...t, capacity: Number.POSITIVE_INFINITY })));
    if (index === undefined || this.#closing) throw new NoMediaThreadError();
    return this.#threads[index]!.open(this.#nextKey++, logger.bindings(), callId);
  };

  /** Calls the live threads can still take. */
  get room(): number {
    return this.#closing ? 0 : roomLeft(this.threads());
  }

  /** Each thread's calls, capacity, liveness and last event-loop delay. */
  threads(): MediaThreadState[] {
    return this.#threads.map((t) => ({
      index: t.index,
      calls: t.calls.size,
      capacity: this.#capacity,
      alive: t.alive,
      restarts: t.restarts,
      ...(t.lagP99Ms === undefined ? {} : { lagP99Ms: t.lagP99Ms }),
    }));
  }

  /** What each live thread holds: its call registry and its open UDP sockets (the leak checks). */
  inspect(): Promise<ThreadInspection[]> {
    return Promise.all(this.#threads.filter((t) => t.alive).map((t) => t.inspect()));
  }

  /** Stops every thread (their calls should be closed by then). Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#mainLagTimer);
      this.#mainLag.disable();
      await Promise.all(this.#threads.map((t) => t.terminate()));
    })();
    return this.#closing;
  }

  /** Test hook: ends thread `index` as a crash would. */
  async kill(index: number): Promise<void> {
    await this.#threads[index]?.terminate();
  }

  async #spawn(index: number, restarts: number): Promise<void> {
    const thread = new MediaThread(
      index,
      restarts,
      {
        index,
        media: this.#o.media,
        logLevel: this.#o.logger.level,
        lagIntervalMs: this.#o.lagIntervalMs ?? 5000,
      },
      this.#o.requestTimeoutMs ?? 15_000,
      {
        lag: (p99Ms) => this.#o.metrics?.emit({ EventLoopLag: p99Ms }, { MediaThread: String(index) }),
        died: (error, calls) => this.#died(thread, error, calls),
      },
    );
    this.#threads[index] = thread;
    await thread.ready;
  }

  #died(thread: MediaThread, error: MediaThreadLostError, calls: number): void {
    if (this.#closing) return;
    const restart = thread.restarts < MAX_RESTARTS;
    this.#o.logger.error(
      { err: { name: error.name, message: error.message }, thread: thread.index, calls, restart },
      'a media thread died',
    );
    if (!restart) return;
    this.#spawn(thread.index, thread.restarts + 1).catch((cause: unknown) =>
      this.#o.logger.error({ err: cause, thread: thread.index }, 'restarting a media thread failed'),
    );
  }
}

/** One media thread: its `Worker`, the proxies of its calls and its requests in flight. */
class MediaThread implements ThreadChannel {
  readonly index: number;
  readonly restarts: number;
  readonly calls = new Map<number, ThreadedCallMedia>();
  readonly ready: Promise<void>;
  alive = false;
  lagP99Ms: number | undefined;
  readonly #worker: Worker;
  readonly #timeoutMs: number;
  readonly #pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout | undefined }
  >();
  readonly #exited: Promise<void>;
  #nextId = 1;
  #lastError: unknown;

  constructor(
    index: number,
    restarts: number,
    data: MediaThreadData,
    timeoutMs: number,
    on: { lag(p99Ms: number): void; died(error: MediaThreadLostError, calls: number): void },
  ) {
    this.index = index;
    this.restarts = restarts;
    this.#timeoutMs = timeoutMs;
    const entry = threadEntry();
    this.#worker = new Worker(entry.url, { execArgv: entry.execArgv, workerData: data });
    let started!: () => void;
    let failed!: (e: Error) => void;
    this.ready = new Promise<void>((resolve, reject) => {
      started = resolve;
      failed = reject;
    });
    const startTimer = setTimeout(() => failed(new Error(`media thread ${index} did not start within 30 s`)), 30_000);
    startTimer.unref();
    this.#worker.on('message', (m: FromThread) => {
      switch (m.t) {
        case 'ready':
          this.alive = true;
          clearTimeout(startTimer);
          started();
          return;
        case 'reply': {
          const p = this.#pending.get(m.id);
          if (!p) return;
          this.#pending.delete(m.id);
          clearTimeout(p.timer);
          if (m.error) p.reject(fromWire(m.error));
          else p.resolve(m.value);
          return;
        }
        case 'state':
          this.calls.get(m.key)?.deliverState(m.state);
          return;
        case 'audio':
          this.calls.get(m.key)?.deliverAudio();
          return;
        case 'failure':
          this.calls.get(m.key)?.fail(fromWire(m.error));
          return;
        case 'lag':
          this.lagP99Ms = m.p99Ms;
          on.lag(m.p99Ms);
          return;
      }
    });
    this.#worker.on('error', (error) => {
      this.#lastError = error;
    });
    this.#exited = new Promise<void>((resolve) => {
      this.#worker.once('exit', (code) => {
        const wasAlive = this.alive;
        this.alive = false;
        clearTimeout(startTimer);
        const error = new MediaThreadLostError(index, this.#lastError ?? `exit code ${code}`);
        failed(error);
        for (const p of this.#pending.values()) {
          clearTimeout(p.timer);
          p.reject(error);
        }
        this.#pending.clear();
        const calls = [...this.calls.values()];
        this.calls.clear();
        for (const call of calls) call.fail(error);
        if (wasAlive) on.died(error, calls.length);
        resolve();
      });
    });
  }

  open(key: number, bindings: Record<string, unknown>, callId?: string): ThreadedCallMedia {
    const media = new ThreadedCallMedia(this, key, callId);
    this.calls.set(key, media);
    this.#post({ t: 'open', key, bindings, ...(callId === undefined ? {} : { callId }) });
    return media;
  }

  request(key: number, op: MediaRequestOp, arg?: string, callId?: string): Promise<unknown> {
    return this.#ask((id) => ({ t: 'request', id, key, op, ...(arg === undefined ? {} : { arg }) }), op, callId);
  }

  command(key: number, command: MediaCommand): void {
    if (!this.alive) return; // its calls were failed when it died
    this.#post({ t: 'command', key, ...command });
  }

  release(key: number): void {
    this.calls.delete(key);
  }

  inspect(): Promise<ThreadInspection> {
    return this.#ask((id) => ({ t: 'inspect', id }), 'inspect', undefined) as Promise<ThreadInspection>;
  }

  /** Stops the thread (a crash, as far as its calls are concerned). */
  async terminate(): Promise<void> {
    await this.#worker.terminate();
    await this.#exited;
  }

  #ask(message: (id: number) => ToThread, op: string, callId: string | undefined): Promise<unknown> {
    if (!this.alive) return Promise.reject(new MediaThreadLostError(this.index, this.#lastError));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new MediaThreadTimeoutError(this.index, op, callId, this.#timeoutMs));
      }, this.#timeoutMs);
      timer.unref();
      this.#pending.set(id, { resolve, reject, timer });
      this.#post(message(id));
    });
  }

  #post(message: ToThread): void {
    this.#worker.postMessage(message);
  }
}
