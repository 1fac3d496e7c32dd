/**
 * The loop check of a placed call (and the own-host route of the in-process stack) compares the target's port with our own: a URI without a port
 * means its transport's default (RFC 3261 §19.1.2), which the `sip` package parses as NaN.
 */
import { describe, expect, it } from 'vitest';
import { targetPort } from '#worker/sip/sip-wire.ts';

describe('the port a SIP target names', () => {
  it('is the default of its transport when the URI names none (parsed as NaN by the sip package)', () => {
    expect(targetPort({ port: Number.NaN }, 'udp')).toBe(5060);
    expect(targetPort({}, 'tcp')).toBe(5060);
    expect(targetPort({ port: Number.NaN }, 'tls')).toBe(5061);
  });

  it('is the URI’s own port otherwise', () => {
    expect(targetPort({ port: 5080 }, 'udp')).toBe(5080);
  });
});
