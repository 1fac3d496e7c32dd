/**
 * The worker's one listener helper: a typed channel whose listeners cannot break the emitter
 * (mediasoup's `safeEmit` idea). A throwing listener is logged and the rest still run, so a bug in
 * one consumer of a SIP dialog, a WhatsApp leg or a media bridge never unwinds the packet or
 * signalling path that emitted. One channel per event kind keeps the types exact without an event
 * map: `readonly audio = new Emitter<RtpView>(logger, 'audio')`.
 */
import type { Logger } from 'pino';

/** Where a throwing listener is reported; the worker's pino logger satisfies it. */
export type EmitterLogger = Pick<Logger, 'error'>;

/**
 * A set of listeners of one event type `E`. A second argument `F` (e.g. a packet's source next to
 * the reused packet view) saves the per-packet allocation of wrapping both in an object.
 */
export class Emitter<E, F = void> {
  readonly #listeners = new Set<(e: E, f: F) => void>();
  readonly #logger: EmitterLogger | undefined;
  readonly #name: string;

  /** `name` appears in the log line when a listener throws. */
  constructor(logger?: EmitterLogger, name = 'event') {
    this.#logger = logger;
    this.#name = name;
  }

  /** Adds `listener`; the returned function removes it. */
  on(listener: (e: E, f: F) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** Whether anyone listens (lets a hot path skip work nobody wants). */
  get size(): number {
    return this.#listeners.size;
  }

  /** Calls every listener with `e`; a listener that throws is logged, never rethrown. */
  emit(e: E, f: F): void {
    for (const l of this.#listeners) {
      try {
        l(e, f);
      } catch (err) {
        this.#logger?.error({ err, event: this.#name }, 'listener threw');
      }
    }
  }

  /** Removes every listener. */
  clear(): void {
    this.#listeners.clear();
  }
}
