/**
 * The simulator CLI as a newcomer uses it: negative numbers are values (`tone <id> 440 -10`), an unreachable
 * simulator is reported with the URL tried and the network cause, `heard` says which tone the simulated user
 * hears, and `npm start`'s "try it" line carries the SIM_URL the CLI needs. The HTTP client is injected, so
 * these stories need no simulator; one story checks the real `fetch` error against a closed port.
 */
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_SIM_URL,
  fetchFailureReason,
  heardReport,
  negativeNumbersAsPositionals,
  runCli,
  tryItCommand,
} from '#simulator/cli.ts';
import type { CallRecord } from '#simulator/graph/call-engine.ts';
import { type ControllablePeer, callDetail } from '#simulator/graph/server.ts';
import { RecentAudio, ToneGenerator } from '#simulator/media/audio.ts';

interface Sent {
  url: string;
  method: string;
  body: unknown;
}

/** A CLI with captured output and a fake simulator answering every request with `answer`. */
function cli(answer: (sent: Sent) => { status: number; body: unknown } = () => ({ status: 200, body: {} })) {
  const out: string[] = [];
  const err: string[] = [];
  const sent: Sent[] = [];
  const fakeFetch = (async (input: string | URL | Request, init?: RequestInit) => {
    const request: Sent = {
      url: String(input),
      method: init?.method ?? 'GET',
      body: typeof init?.body === 'string' ? JSON.parse(init.body) : undefined,
    };
    sent.push(request);
    const { status, body } = answer(request);
    return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
  }) as typeof fetch;
  const io = { out: (l: string) => out.push(l), err: (l: string) => err.push(l), env: {}, fetch: fakeFetch };
  return { io, out, err, sent };
}

/** `ms` of a tone in 20 ms frames, as the relay pushes decoded packets. */
function pushTone(audio: RecentAudio, hz: number, dbfs: number, ms: number): void {
  const tone = new ToneGenerator(hz, dbfs, audio.sampleRate);
  for (let t = 0; t < ms; t += 20) audio.push(tone.nextFrame());
}

describe('negative numbers on the command line', () => {
  it('moves positionals, negative numbers among them, behind "--" and keeps options with their values', () => {
    expect(negativeNumbersAsPositionals(['tone', 'wacid.1', '440', '-10'])).toEqual([
      '--',
      'tone',
      'wacid.1',
      '440',
      '-10',
    ]);
    expect(negativeNumbersAsPositionals(['tone', 'wacid.1', '--sim-url', 'http://sim:1', '440', '-.5', '-h'])).toEqual([
      '--sim-url',
      'http://sim:1',
      '-h',
      '--',
      'tone',
      'wacid.1',
      '440',
      '-.5',
    ]);
    expect(negativeNumbersAsPositionals(['calls', '--', '-x'])).toEqual(['--', 'calls', '-x']);
  });

  it('`tone <id> 440 -10` plays 440 Hz at -10 dBFS', async () => {
    const c = cli(() => ({ status: 200, body: { id: 'wacid.1', playing: { hz: 440, dbfs: -10 } } }));
    expect(await runCli(['tone', 'wacid.1', '440', '-10', '--sim-url', 'http://sim.test:9'], c.io)).toBe(0);
    expect(c.sent).toEqual([
      { url: 'http://sim.test:9/_sim/calls/wacid.1/tone', method: 'POST', body: { hz: 440, dbfs: -10 } },
    ]);
    expect(c.err).toEqual([]);
  });

  it('an unknown flag is still refused, and a level above 0 dBFS or a frequency that is no number is a usage error', async () => {
    for (const argv of [
      ['tone', 'wacid.1', '440', '-x'],
      ['tone', 'wacid.1', '440', '10'],
      ['tone', 'wacid.1', 'loud'],
    ]) {
      const c = cli();
      expect(await runCli(argv, c.io)).toBe(2);
      expect(c.sent).toEqual([]);
    }
  });
});

describe('Meta’s timers and faults from the command line', () => {
  it('`serve --unanswered-ms` takes only Meta’s window, "about 30 to 60 seconds"', async () => {
    const serve = ['serve', '--webhook-url', 'http://127.0.0.1:9/webhook', '--app-secret', 's', '--verify-token', 't'];
    const c = cli();
    const io = { ...c.io, shutdown: Promise.resolve() };
    expect(
      await runCli(
        [
          ...serve,
          '--access-token',
          'a',
          '--port',
          '0',
          '--unanswered-ms',
          '45000',
          '--no-verify',
          '--log-level',
          'silent',
        ],
        io,
      ),
    ).toBe(0);
    for (const ms of ['29999', '60001', '300']) {
      const bad = cli();
      expect(await runCli([...serve, '--access-token', 'a', '--unanswered-ms', ms], bad.io)).toBe(2);
      expect(bad.err.join('\n')).toContain('--unanswered-ms must be within Meta’s window, 30000–60000');
    }
  });

  it('`script <user>` sets the faults of the ACCEPTED status: late, duplicated, lost', async () => {
    const c = cli(() => ({ status: 200, body: {} }));
    const argv = [
      'script',
      '5511955551234',
      '--accepted-delay-ms',
      '3000',
      '--accepted-duplicates',
      '1',
      '--accepted-lost',
    ];
    expect(await runCli([...argv, '--sim-url', 'http://sim.test:9'], c.io)).toBe(0);
    expect(c.sent).toEqual([
      {
        url: 'http://sim.test:9/_sim/users/5511955551234/script',
        method: 'POST',
        body: { acceptedStatus: { delayMs: 3000, duplicates: 1, lost: true } },
      },
    ]);
  });
});

describe('an unreachable simulator', () => {
  it('names the URL tried and the cause, and how to point the CLI elsewhere', async () => {
    const c = cli();
    c.io.fetch = (async () => {
      throw new TypeError('fetch failed', {
        cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:3001'), { code: 'ECONNREFUSED' }),
      });
    }) as typeof fetch;
    expect(await runCli(['calls'], c.io)).toBe(1);
    const report = JSON.parse(c.err[0] ?? '{}') as { error: string; url: string; cause: string };
    expect(report.url).toBe(`${DEFAULT_SIM_URL}/_sim/calls`);
    expect(report.cause).toBe('ECONNREFUSED');
    expect(report.error).toContain(`${DEFAULT_SIM_URL}/_sim/calls (ECONNREFUSED)`);
    expect(report.error).toContain('SIM_URL');
  });

  it('reports the real fetch failure of a closed port as ECONNREFUSED', async () => {
    const server = createServer();
    const port = await new Promise<number>((resolve) =>
      server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)),
    );
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const err: string[] = [];
    const io = { out: () => undefined, err: (l: string) => err.push(l), env: { SIM_URL: `http://127.0.0.1:${port}` } };
    expect(await runCli(['calls'], io)).toBe(1);
    expect(JSON.parse(err[0] ?? '{}')).toMatchObject({
      url: `http://127.0.0.1:${port}/_sim/calls`,
      cause: 'ECONNREFUSED',
    });
  });

  it('takes the cause from the error when there is no nested one', () => {
    expect(fetchFailureReason(new DOMException('The operation was aborted due to timeout', 'TimeoutError'))).toBe(
      'The operation was aborted due to timeout',
    );
    expect(fetchFailureReason(new TypeError('fetch failed', { cause: new Error('getaddrinfo ENOTFOUND sim') }))).toBe(
      'getaddrinfo ENOTFOUND sim',
    );
  });
});

describe('the tone the simulated user heard', () => {
  it('is the dominant frequency and level of the last second', () => {
    const audio = new RecentAudio(48_000, 1000);
    pushTone(audio, 1000, -12, 200);
    expect(audio.heard()).toEqual({ audible: true, hz: 1000, dbfs: -12, ms: 200 });
    pushTone(audio, 1000, -12, 800);
    expect(audio.heard()).toEqual({ audible: true, hz: 1000, dbfs: -12, ms: 1000 });
    // A full second of a new tone replaces the old one entirely.
    pushTone(audio, 440, -10, 1000);
    expect(audio.heard()).toEqual({ audible: true, hz: 440, dbfs: -10, ms: 1000 });
  });

  it('is silence below -50 dBFS, and nothing before any audio', () => {
    const audio = new RecentAudio(48_000, 1000);
    expect(audio.heard()).toEqual({ audible: false, hz: 0, dbfs: null, ms: 0 });
    pushTone(audio, 1000, -60, 1000);
    expect(audio.heard()).toEqual({ audible: false, hz: 0, dbfs: -60, ms: 1000 });
    audio.push(new Int16Array(48_000));
    expect(audio.heard()).toEqual({ audible: false, hz: 0, dbfs: null, ms: 1000 });
  });

  it('keeps the newest samples in order across the ring boundary', () => {
    const audio = new RecentAudio(1000, 5);
    audio.push(Int16Array.from([1, 2, 3]));
    audio.push(Int16Array.from([4, 5, 6, 7]));
    expect([...audio.samples()]).toEqual([3, 4, 5, 6, 7]);
    audio.push(Int16Array.from([8, 9, 10, 11, 12, 13]));
    expect([...audio.samples()]).toEqual([9, 10, 11, 12, 13]);
  });

  it('is in the call detail of the control API', () => {
    const relay = {
      connectionState: 'connected',
      receivedDigits: '12',
      stats: () => ({ packetsReceived: 50 }),
      heard: () => ({ audible: true, hz: 1000, dbfs: -12, ms: 1000 }),
    };
    const call = { id: 'wacid.1', state: 'accepted', history: [], log: [], createdAt: 0, relay };
    const detail = callDetail(call as unknown as CallRecord<ControllablePeer>) as { relay: { heard: unknown } };
    expect(detail.relay.heard).toEqual({ audible: true, hz: 1000, dbfs: -12, ms: 1000 });
  });

  it('`heard <id>` prints it with the digits and packets received', async () => {
    const detail = {
      id: 'wacid.1',
      state: 'accepted',
      metaSdp: 'v=0…',
      relay: {
        receivedDigits: '42*',
        stats: { packetsReceived: 151 },
        heard: { audible: true, hz: 1000, dbfs: -12, ms: 1000 },
      },
    };
    const c = cli(() => ({ status: 200, body: detail }));
    expect(await runCli(['heard', 'wacid.1', '--sim-url', 'http://sim.test:9'], c.io)).toBe(0);
    expect(c.sent).toEqual([{ url: 'http://sim.test:9/_sim/calls/wacid.1', method: 'GET', body: undefined }]);
    expect(JSON.parse(c.out[0] ?? '{}')).toEqual({
      id: 'wacid.1',
      state: 'accepted',
      heard: { audible: true, hz: 1000, dbfs: -12, ms: 1000 },
      digitsReceived: '42*',
      packetsReceived: 151,
    });
    expect(heardReport({ id: 'x', state: 'offered' })).toEqual({
      id: 'x',
      state: 'offered',
      heard: null,
      digitsReceived: '',
      packetsReceived: 0,
    });
  });

  it('`heard` of an unknown call fails with the simulator answer', async () => {
    const c = cli(() => ({ status: 404, body: { error: { message: 'unknown call wacid.9' } } }));
    expect(await runCli(['heard', 'wacid.9'], c.io)).toBe(1);
    expect(c.err[0]).toContain('unknown call wacid.9');
  });
});

describe("npm start's try-it line", () => {
  it('needs no SIM_URL when the simulator is where the CLI looks by default', () => {
    expect(tryItCommand('http://127.0.0.1:3001')).toBe('npm run sim -- call --from 5511987654321 --name Ana');
  });

  it('sets SIM_URL for a simulator on another port (PORT=3400 serves it on 3401)', () => {
    expect(tryItCommand('http://127.0.0.1:3401')).toBe(
      'SIM_URL=http://127.0.0.1:3401 npm run sim -- call --from 5511987654321 --name Ana',
    );
  });
});

describe('Meta’s calling error codes from the command line', () => {
  it('`fail <id> <code>` makes the user’s client fail; `number-faults` sets and shows the number’s faults', async () => {
    const c = cli();
    const sim = ['--sim-url', 'http://sim.test:9'];
    expect(await runCli(['fail', 'wacid.1', '138022', ...sim], c.io)).toBe(0);
    expect(
      await runCli(
        ['number-faults', '--test-allow-list', '447700900999,5511900000001', '--payment-issue', 'on', ...sim],
        c.io,
      ),
    ).toBe(0);
    expect(await runCli(['number-faults', '--calling-paused', 'none', ...sim], c.io)).toBe(0);
    expect(await runCli(['number-faults', ...sim], c.io)).toBe(0);
    expect(c.sent).toEqual([
      { url: 'http://sim.test:9/_sim/calls/wacid.1/fail', method: 'POST', body: { code: 138022 } },
      {
        url: 'http://sim.test:9/_sim/number/faults',
        method: 'POST',
        body: { testAllowList: ['447700900999', '5511900000001'], paymentIssue: true },
      },
      { url: 'http://sim.test:9/_sim/number/faults', method: 'POST', body: { callingPaused: null } },
      { url: 'http://sim.test:9/_sim/number/faults', method: 'GET', body: undefined },
    ]);
    expect(await runCli(['fail', 'wacid.1', 'soon', ...sim], c.io)).toBe(2);
  });
});
