import { describe, expect, it } from 'vitest';
import { CALL_STATES, transition } from '#core/calls/call-state.ts';

describe('call state machine', () => {
  it('walks a user-initiated call from admission to the end', () => {
    let state = 'admitting' as (typeof CALL_STATES)[number];
    for (const type of ['admitted', 'claimed', 'pre-accepted', 'ringing', 'answered'] as const) {
      const move = transition(state, { type });
      expect(move, `${type} from ${state}`).toBeDefined();
      state = move!.to;
    }
    expect(transition(state, { type: 'ended', reason: 'agent-hung-up' })?.to).toBe('ended');
  });

  it('lets every live state end, and nothing leave ended', () => {
    for (const s of CALL_STATES.filter((x) => x !== 'ended'))
      expect(transition(s, { type: 'ended', reason: 'caller-hung-up' })?.to).toBe('ended');
    for (const type of ['admitted', 'claimed', 'pre-accepted', 'ringing', 'answered'] as const)
      expect(transition('ended', { type })).toBeUndefined();
    expect(transition('ended', { type: 'ended', reason: 'caller-hung-up' })).toBeUndefined();
  });

  it('refuses a second claim and going backwards', () => {
    expect(transition('claimed', { type: 'claimed' })).toBeUndefined();
    expect(transition('answered', { type: 'ringing' })).toBeUndefined();
    expect(transition('queued', { type: 'answered' })).toBeUndefined();
  });
});
