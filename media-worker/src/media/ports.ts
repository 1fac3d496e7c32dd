/**
 * The two seams of the media bridge: what it needs of the WhatsApp leg and of the SIP leg's RTP
 * session, and nothing more. `WhatsAppLeg` and `RtpSession` satisfy them structurally (no
 * `implements`, so neither depends on the bridge); tests drive the bridge with fakes that record
 * what is sent, on a `ManualClock`.
 *
 * @module
 */
import type { RtpView, TelephoneEvent } from './rtp.ts';

/** Source address of a received SIP-side packet. */
export interface RtpSource {
  address: string;
  port: number;
}

/** A telephone-event packet from Meta with its place in the event (as the WhatsApp leg reports it). */
export interface WhatsAppTelephoneEvent extends TelephoneEvent {
  /**
   * `start` (first packet seen), `update`, `end` (first end packet), or `repeat` (a
   * retransmission of an ended event: nothing to relay, but a packet of Meta's sequence space).
   */
  phase: 'start' | 'update' | 'end' | 'repeat';
  /** The packet's RTP sequence number (the audio stream's space, so loss is counted right). */
  sequenceNumber: number;
  /** RTP timestamp of the event start (Meta's audio clock, 48 kHz). */
  timestamp: number;
}

/** What the bridge uses of the WhatsApp leg: Meta's Opus stream both ways and RFC 4733 events. */
export interface WhatsAppMedia {
  /** Only `'connected'` matters: frames sent before that are lost (counted as clipping). */
  readonly connectionState: 'new' | 'connecting' | 'connected' | 'disconnected' | 'failed' | 'closed';
  /** Opus from Meta; the view and its payload are valid only during the call. */
  onAudio(cb: (rtp: RtpView) => void): () => void;
  /** Every RFC 4733 packet from Meta; retransmissions of an ended event come as phase `repeat`. */
  onTelephoneEvent(cb: (ev: WhatsAppTelephoneEvent) => void): () => void;
  /**
   * One Opus frame to Meta; the leg stamps sequence number, timestamp and SSRC.
   * `timestampDelta`: 48 kHz ticks since the previous audio packet (default 960).
   */
  sendAudio(payload: Uint8Array, options?: { timestampDelta?: number; marker?: boolean }): void;
  /** One RFC 4733 packet to Meta (the end packet is repeated by the leg). */
  sendTelephoneEvent(ev: TelephoneEvent, isStart?: boolean): void;
  /** Keep Meta fed with silence whenever no audio is sent (maiden packet, hold). */
  startSilence(): void;
  /** The caller's audio stopped: silence takes over with the next frame. */
  resumeSilence(): void;
  /**
   * How far ahead of real time (ms) a frame sent at `now` with `timestampDelta` would put the
   * outgoing stream. `now` is on the same clock as the leg's (the bridge passes its own).
   */
  audioLeadMs(timestampDelta: number, now: number): number;
}

/** What the bridge uses of the SIP leg's RTP session. */
export interface SipMedia {
  /** Valid RTP from the PBX; the view is reused, copy what you keep. */
  onPacket(cb: (packet: RtpView, source: RtpSource) => void): () => void;
  /** One RTP packet to the PBX with the session's SSRC and next sequence number. */
  send(payloadType: number, timestamp: number, payload: Uint8Array, marker?: boolean): void;
  /** The PBX's address from SDP (answer, re-INVITE). */
  setRemote(address: string, port: number): void;
  /** RTP clock rate of the negotiated codec (for the session's jitter and sender reports). */
  setClockRate(hz: number): void;
  /** The session's one RFC 3550 A.8 jitter estimate of the PBX's stream, in ms. */
  stats(): { readonly rtcp: { readonly jitterMs: number } };
}
