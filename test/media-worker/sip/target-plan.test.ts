/**
 * Which target a placed call tries next (both adapters use this rule): failover, 3xx redirects
 * inside the failover list, and 503 Retry-After cooldowns, on a hand-moved clock.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '#core/clock.ts';
import { MAX_COOLDOWN_S, parseRetryAfter, TargetCooldowns, TargetPlan, targetKey } from '#worker/sip/target-plan.ts';

const uris = (plan: TargetPlan): string[] => {
  const out: string[] = [];
  for (let t = plan.next(); t; t = plan.next()) out.push(t.uri);
  return out;
};

describe('Class: TargetPlan', () => {
  it('tries configured targets in order, each spelling of one URI once', () => {
    const plan = new TargetPlan(
      [{ uri: 'sip:a@h1' }, { uri: 'SIP:a@H1' }, { uri: 'sip:A@h1' }, { uri: 'sip:b@h2;transport=tcp' }],
      new TargetCooldowns(),
    );
    expect(uris(plan)).toEqual(['sip:a@h1', 'sip:A@h1', 'sip:b@h2;transport=tcp']);
  });

  it('a 302 puts its SIP Contacts first, highest q first (ties in header order), dropping loops, duplicates, non-SIP URIs and URI headers', () => {
    const plan = new TargetPlan([{ uri: 'sip:a@h1' }, { uri: 'sip:b@h2' }], new TargetCooldowns());
    const a = plan.next()!;
    expect(
      plan.failed(a, 302, {
        contacts: [
          { uri: 'sip:x@h3', q: '0.5' },
          { uri: 'tel:+441234' },
          { uri: '<sip:y@h3?Subject=hi>', q: 0.5 },
          { uri: 'sip:a@h1' },
          { uri: 'sip:z@h3', q: '1.0' },
          { uri: 'sip:x@H3' },
        ],
      }),
    ).toBe(true);
    expect(uris(plan)).toEqual(['sip:z@h3', 'sip:x@h3', 'sip:y@h3', 'sip:b@h2']);
    expect(plan.redirects).toBe(1);
  });

  it('a redirected target carries the credentials only to the redirecting target’s own host, and names where it came from', () => {
    const auth = { username: 'u', password: 'p' };
    const plan = new TargetPlan([{ uri: 'sip:a@pbx.example', auth }], new TargetCooldowns());
    plan.failed(plan.next()!, 301, { contacts: [{ uri: 'sip:b@PBX.example:5070' }, { uri: 'sip:c@evil.example' }] });
    expect(plan.next()).toEqual({ uri: 'sip:b@PBX.example:5070', redirectedFrom: 'sip:a@pbx.example', auth });
    expect(plan.next()).toEqual({ uri: 'sip:c@evil.example', redirectedFrom: 'sip:a@pbx.example' });
  });

  it('follows at most maxRedirects redirects; then a 3xx only moves on', () => {
    const plan = new TargetPlan([{ uri: 'sip:r0@h' }], new TargetCooldowns(), { maxRedirects: 2 });
    for (let i = 0; i < 3; i++) plan.failed(plan.next()!, 302, { contacts: [{ uri: `sip:r${i + 1}@h` }] });
    expect(plan.redirects).toBe(2);
    expect(plan.next()).toBeUndefined();
  });

  it('status rules: 408 and 5xx and unfollowed 3xx (305, 380, no usable Contact, invalid URI) move on; other 4xx and 6xx stop', () => {
    const plan = new TargetPlan([{ uri: 'sip:a@h' }], new TargetCooldowns(), { isValid: (u) => !u.includes('bad') });
    const a = plan.next()!;
    for (const s of [408, 500, 503, 599, 305, 380, 300]) expect(plan.failed(a, s)).toBe(true);
    for (const s of [400, 404, 480, 486, 487, 600, 603, 606]) expect(plan.failed(a, s)).toBe(false);
    expect(plan.failed(a, 302, { contacts: [{ uri: 'sip:bad@h' }] })).toBe(true);
    expect(plan.next()).toBeUndefined();
    expect(plan.redirects).toBe(0);
  });
});

describe('Class: TargetCooldowns', () => {
  it('a 503 with Retry-After keeps that target from every plan for exactly that long; without it, not at all', () => {
    const clock = new ManualClock(0);
    const cooldowns = new TargetCooldowns({ clock });
    const first = new TargetPlan([{ uri: 'sip:a@h' }, { uri: 'sip:b@h' }], cooldowns);
    expect(first.failed(first.next()!, 503, { retryAfter: '30 (maintenance);duration=60' })).toBe(true);
    expect(first.failed(first.next()!, 503, {})).toBe(true);
    clock.advance(29_999);
    const second = new TargetPlan([{ uri: 'SIP:a@H' }, { uri: 'sip:b@h' }], cooldowns);
    expect(uris(second)).toEqual(['sip:b@h']);
    expect(second.skippedCooling).toBe(1);
    clock.advance(1);
    expect(uris(new TargetPlan([{ uri: 'sip:a@h' }], cooldowns))).toEqual(['sip:a@h']);
  });

  it(`caps a cooldown at ${MAX_COOLDOWN_S} s and holds a bounded number of targets, dropping expired then soonest-ending ones`, () => {
    const clock = new ManualClock(0);
    const cooldowns = new TargetCooldowns({ clock, maxEntries: 2 });
    cooldowns.coolDown('sip:a@h', 1_000_000);
    expect(cooldowns.remainingMs('sip:a@h')).toBe(MAX_COOLDOWN_S * 1000);
    cooldowns.coolDown('sip:b@h', 10);
    cooldowns.coolDown('sip:c@h', 20);
    expect(cooldowns.size).toBe(2);
    expect(cooldowns.remainingMs('sip:b@h')).toBe(0); // the soonest to end went
    expect(cooldowns.remainingMs('sip:c@h')).toBe(20_000);
    clock.advance(20_000);
    cooldowns.coolDown('sip:d@h', 5);
    expect(cooldowns.size).toBe(2); // c had expired
    expect(cooldowns.remainingMs('sip:a@h')).toBeGreaterThan(0);
  });
});

describe('Functions: parseRetryAfter, targetKey', () => {
  it('reads delta-seconds and ignores comment and parameters (RFC 3261 §20.33)', () => {
    expect(parseRetryAfter('120')).toBe(120);
    expect(parseRetryAfter(' 18000;duration=3600')).toBe(18000);
    expect(parseRetryAfter('5 (I am in a meeting)')).toBe(5);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(undefined)).toBeUndefined();
  });

  it('compares scheme, host and parameters without case, the user part with case', () => {
    expect(targetKey('<SIP:Bob@Example.COM:5060;Transport=TCP>')).toBe('sip:Bob@example.com:5060;transport=tcp');
    expect(targetKey('sip:alice@h')).not.toBe(targetKey('sip:Alice@h'));
  });
});
