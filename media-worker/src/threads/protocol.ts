/**
 * The messages between the worker's main thread and a media thread (`node:worker_threads`). Each
 * call's media on a thread is known by a `key` the main thread allocates. Requests carry an `id`
 * and are answered once (`reply`); commands are ordered and unanswered (a failure comes back as a
 * `failure` of the call); events are pushed. Errors cross as {@link WireError} and are rebuilt as
 * the same named errors, with their context.
 */
import { CallMediaClosedError } from '../calls/call-media.ts';
import type { WorkerConfig } from '../config.ts';
import {
  MediaError,
  type MediaErrorCode,
  type MediaErrorContext,
  UnsupportedKeyExchangeError,
} from '../media/errors.ts';
import type { SipMediaDescription } from '../media/sip-sdp.ts';
import type { RTCPeerConnectionState } from '../webrtc/whatsapp-leg.ts';

/** What a media thread is started with (`workerData`). */
export interface MediaThreadData {
  /** 0-based index of the thread in the pool (the `MediaThread` metric dimension). */
  readonly index: number;
  readonly media: WorkerConfig['media'];
  readonly logLevel: string;
  /** How often the thread reports its event-loop delay. */
  readonly lagIntervalMs: number;
}

/** Requests: answered with the method's value or its error. */
export type MediaRequestOp = 'answer' | 'createOffer' | 'applyAnswer' | 'openSip' | 'stats' | 'close';

/** Ordered commands of one call (no answer). */
export type MediaCommand =
  | { readonly op: 'withholdMedia' | 'releaseMedia' | 'startSilence' | 'hold' | 'resume' }
  | { readonly op: 'start'; readonly sip: SipMediaDescription; readonly callId: string }
  | { readonly op: 'updateSip'; readonly sip: SipMediaDescription }
  /** A digit from a SIP INFO, to WhatsApp. */
  | { readonly op: 'sendDtmfToWhatsApp'; readonly digit: string; readonly durationMs: number }
  /** Push every peer-connection state change of the leg. */
  | { readonly op: 'watchState' }
  /** Push the next audio packet from Meta (once), or stop waiting for it. */
  | { readonly op: 'watchAudio' | 'unwatchAudio' };

/** Main thread → media thread. */
export type ToThread =
  | {
      readonly t: 'open';
      readonly key: number;
      readonly callId?: string;
      /** The call logger's bindings (worker id, call id…), so the thread's lines read as the call's. */
      readonly bindings: Record<string, unknown>;
    }
  | {
      readonly t: 'request';
      readonly id: number;
      readonly key: number;
      readonly op: MediaRequestOp;
      readonly arg?: string;
    }
  | ({ readonly t: 'command'; readonly key: number } & MediaCommand)
  | { readonly t: 'inspect'; readonly id: number };

/** What a thread holds, for the leak checks: calls in its registry, UDP sockets open in it. */
export interface ThreadInspection {
  readonly index: number;
  readonly calls: number;
  readonly udpSockets: number;
}

/** Media thread → main thread. */
export type FromThread =
  | { readonly t: 'ready' }
  | { readonly t: 'reply'; readonly id: number; readonly value?: unknown; readonly error?: WireError }
  | { readonly t: 'state'; readonly key: number; readonly state: RTCPeerConnectionState }
  | { readonly t: 'audio'; readonly key: number }
  | { readonly t: 'failure'; readonly key: number; readonly error: WireError }
  /** Event-loop delay over the last interval (`monitorEventLoopDelay`), milliseconds. */
  | { readonly t: 'lag'; readonly p99Ms: number; readonly maxMs: number; readonly meanMs: number };

/** Sampling interval of the event-loop delay histograms (`monitorEventLoopDelay`), ms. */
export const LAG_RESOLUTION_MS = 10;

/** A delay histogram value (ns; the sampling timer's interval) as event-loop lag in ms: less the resolution. */
export function lagMs(histogramNs: number): number {
  return Number.isFinite(histogramNs) ? Math.max(0, histogramNs / 1e6 - LAG_RESOLUTION_MS) : 0;
}

/** An error as it crosses threads. */
export interface WireError {
  readonly name: string;
  readonly message: string;
  readonly callId?: string;
  readonly code?: MediaErrorCode;
  readonly context?: MediaErrorContext;
  readonly keyExchange?: 'SDES';
}

/** An error (any value) as a {@link WireError}. */
export function toWire(error: unknown): WireError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) };
  if (error instanceof MediaError)
    return { name: error.name, message: error.message, code: error.code, context: { ...error.context } };
  if (error instanceof UnsupportedKeyExchangeError)
    return {
      name: error.name,
      message: error.message,
      keyExchange: error.keyExchange,
      ...(error.callId === undefined ? {} : { callId: error.callId }),
    };
  if (error instanceof CallMediaClosedError)
    return {
      name: error.name,
      message: error.message,
      ...(error.callId === undefined ? {} : { callId: error.callId }),
    };
  return { name: error.name, message: error.message };
}

/** The named error a {@link WireError} stands for (a plain `Error` with its name for the others). */
export function fromWire(wire: WireError): Error {
  switch (wire.name) {
    case 'MediaError':
      return new MediaError(wire.code ?? 'webrtc', wire.message, wire.context ?? {});
    case 'UnsupportedKeyExchangeError':
      return new UnsupportedKeyExchangeError(wire.callId, wire.keyExchange ?? 'SDES');
    case 'CallMediaClosedError':
      return new CallMediaClosedError(wire.callId);
    default: {
      const error = new Error(wire.message);
      error.name = wire.name;
      return error;
    }
  }
}
