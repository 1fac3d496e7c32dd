/**
 * `npm run preflight -- --stage <s>` against a fake SSM endpoint over real HTTP: an operator runs it
 * before `cdk deploy` and learns what is missing or wrong in the stage's parameters, instead of
 * watching tasks exit and the deployment roll back (issue 15 item 4).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { checkParameters, type FoundParameter, main } from '../../scripts/preflight.ts';
import { type FakeSsm, startFakeSsm } from '../helpers/fake-ssm.ts';

const P = '/wa-sip-bridge/prod';

/** A stage an operator set up completely and correctly. */
function readyStage(): FakeSsm['store'] {
  return {
    [`${P}/META_APP_SECRET`]: { Type: 'SecureString', Value: 'app-secret-value' },
    [`${P}/META_VERIFY_TOKEN`]: { Type: 'SecureString', Value: 'verify-token-value' },
    [`${P}/CONTROL_API_KEY`]: { Type: 'SecureString', Value: 'control-api-key-value' },
    [`${P}/META_ACCESS_TOKEN`]: { Type: 'SecureString', Value: 'EAAG-access-token' },
    [`${P}/META_PHONE_NUMBER_ID`]: { Type: 'String', Value: '436666719526789' },
    [`${P}/META_BUSINESS_NUMBER`]: { Type: 'String', Value: '13175551399' },
    [`${P}/META_GRAPH_URL`]: { Type: 'String', Value: 'https://graph.facebook.com/v23.0' },
    [`${P}/SIP_TARGET_URI`]: { Type: 'String', Value: 'sip:agents@pbx.example.com:5060;transport=tcp' },
    [`${P}/LOG_LEVEL`]: { Type: 'String', Value: 'INFO' },
  };
}

function found(store: FakeSsm['store']): FoundParameter[] {
  return Object.entries(store).map(([name, p]) => ({ name, type: p.Type, value: p.Value }));
}

describe('preflight: what an operator learns before deploying', () => {
  it('a complete stage passes with no findings', () => {
    const report = checkParameters('prod', found(readyStage()));

    expect(report).toMatchObject({ ok: true, prefix: P, found: 9, findings: [] });
  });

  it('names each required setting that is missing, and which deployable needs it', () => {
    const store = readyStage();
    delete store[`${P}/SIP_TARGET_URI`];
    delete store[`${P}/META_ACCESS_TOKEN`];

    const report = checkParameters('prod', found(store));

    expect(report.ok).toBe(false);
    expect(report.findings).toEqual([
      expect.objectContaining({
        severity: 'error',
        problem: 'missing',
        key: 'META_ACCESS_TOKEN',
        detail: expect.stringContaining('required by control-plane and media-worker'),
      }),
      expect.objectContaining({
        problem: 'missing',
        key: 'SIP_TARGET_URI',
        name: `${P}/SIP_TARGET_URI`,
        detail: expect.stringContaining('required by media-worker'),
      }),
    ]);
  });

  it('reports a value its schema refuses, with the schema’s reason', () => {
    const store = readyStage();
    store[`${P}/META_GRAPH_URL`] = { Type: 'String', Value: 'graph.facebook.com' };

    const report = checkParameters('prod', found(store));

    expect(report.ok).toBe(false);
    expect(report.findings).toEqual([
      expect.objectContaining({ problem: 'invalid', key: 'META_GRAPH_URL', severity: 'error' }),
    ]);
  });

  it('reports what only the deployable’s loader checks (BUSINESS_HOURS that is not JSON)', () => {
    const store = readyStage();
    store[`${P}/BUSINESS_HOURS`] = { Type: 'String', Value: '{mon: 9-17}' };

    const report = checkParameters('prod', found(store));

    expect(report.findings).toEqual([
      expect.objectContaining({ problem: 'invalid', key: 'BUSINESS_HOURS', detail: 'is not valid JSON' }),
    ]);
  });

  it('refuses a secret stored as a plain String, and never prints a secret’s value', () => {
    const store = readyStage();
    store[`${P}/CONTROL_API_KEY`] = { Type: 'String', Value: 'plain-text-control-api-key-0123456789' };
    store[`${P}/META_APP_SECRET`] = { Type: 'SecureString', Value: '' };

    const report = checkParameters('prod', found(store));

    expect(report.findings).toEqual([
      expect.objectContaining({ problem: 'missing', key: 'META_APP_SECRET' }),
      expect.objectContaining({ problem: 'not-secure', key: 'CONTROL_API_KEY', severity: 'error' }),
    ]);
    expect(JSON.stringify(report)).not.toContain('plain-text-control-api-key-0123456789');
  });

  it('warns about a typo (with the nearest setting) and about a parameter the stack overrides', () => {
    const store = readyStage();
    store[`${P}/SIP_TARGET_URL`] = { Type: 'String', Value: 'sip:x@y' };
    store[`${P}/CALLS_TABLE`] = { Type: 'String', Value: 'my-table' };

    const report = checkParameters('prod', found(store));

    expect(report.ok).toBe(true); // warnings only
    expect(report.findings).toEqual([
      expect.objectContaining({
        severity: 'warning',
        problem: 'unknown',
        key: 'SIP_TARGET_URL',
        detail: expect.stringContaining('did you mean SIP_TARGET_URI?'),
      }),
      expect.objectContaining({ severity: 'warning', problem: 'ignored', key: 'CALLS_TABLE' }),
    ]);
  });
});

describe('npm run preflight against a parameter store over HTTP', () => {
  let ssm: FakeSsm;
  let lines: string[];
  const run = (...args: string[]) =>
    main(
      ['--stage', 'prod', '--endpoint', ssm.endpoint, '--region', 'eu-west-1', ...args],
      {},
      (l) => lines.push(l),
      () => ssm.client(),
    );

  beforeAll(async () => {
    ssm = await startFakeSsm();
  });
  afterAll(() => ssm.close());
  beforeEach(() => {
    lines = [];
    ssm.store = readyStage();
    ssm.calls.length = 0;
    ssm.delayMs = 0;
    ssm.fail = false;
  });

  it('reads every page, decrypted, and exits 0 on a ready stage', async () => {
    expect(await run()).toBe(0);

    expect(ssm.calls.length).toBe(5); // 9 parameters, 2 a page
    expect(ssm.calls[0]!.body).toMatchObject({ Path: P, Recursive: false, WithDecryption: true });
    expect(lines.at(-1)).toMatch(/^ok: /);
  });

  it('prints each problem on a line and exits 1', async () => {
    delete ssm.store[`${P}/SIP_TARGET_URI`];

    expect(await run()).toBe(1);

    expect(lines).toContain(
      `ERROR missing ${P}/SIP_TARGET_URI: required by media-worker: SIP URI calls are placed to, e.g. sip:agent@pbx.example.com:5060;transport=tcp.`,
    );
    expect(lines.at(-1)).toMatch(/^NOT READY/);
  });

  it('--json prints the report as one object', async () => {
    expect(await run('--json')).toBe(0);

    expect(JSON.parse(lines.join('\n'))).toMatchObject({ stage: 'prod', ok: true, found: 9 });
  });

  it('SSM refusing access is an error naming the prefix, exit 1', async () => {
    ssm.fail = true;

    expect(await run()).toBe(1);

    expect(lines).toEqual([
      expect.stringMatching(/^ERROR SSM parameters under \/wa-sip-bridge\/prod\/: .*not authorized/),
    ]);
  });

  it('gives up at its deadline when SSM does not answer', async () => {
    ssm.delayMs = 5000;

    expect(await run('--timeout-ms', '200')).toBe(1);

    expect(lines).toEqual([expect.stringContaining('no answer within 200 ms')]);
  });

  it.each([[[]], [['--stage', 'a/b']], [['--stage', 'prod', '--timeout-ms', '0']], [['--stage', 'prod', '--nope']]])(
    'bad usage %j exits 2',
    async (args) => {
      expect(await main(args, {}, (l) => lines.push(l))).toBe(2);
    },
  );
});
