import { expect } from 'chai';
import { addLogContext, configureLogs, logger, logTo, maskSecrets, REDACTED, withLogContext } from '../../core/logger.ts';

describe('logger', () => {
  let written: string[];
  const lines = () => written.map((line) => JSON.parse(line) as Record<string, unknown>);
  beforeEach(() => {
    written = [];
    logTo({ write: (line: string) => written.push(line) });
    configureLogs({ level: 'info', format: 'json', bindings: {} });
  });
  afterEach(() => {
    logTo(undefined);
    configureLogs({ level: 'info', format: 'json', bindings: {} });
  });

  it('writes one JSON line per event: level, ISO time, scope, fields, message', () => {
    logger('worker').info('web listening', { url: 'http://127.0.0.1:3000', count: 2, flag: false, gone: undefined });
    expect(written).to.have.length(1);
    expect(written[0]).to.match(/^\{.*\}\n$/);
    expect(written[0]!.trim()).to.not.include('\n');
    const line = lines()[0]!;
    expect(Object.keys(line)).to.deep.equal(['level', 'time', 'scope', 'url', 'count', 'flag', 'message']);
    expect(line).to.include({ level: 'info', scope: 'worker', url: 'http://127.0.0.1:3000', count: 2, flag: false, message: 'web listening' });
    expect(new Date(line.time as string).toISOString()).to.equal(line.time);
    logger('worker').error('no fields, 100% %s literal');
    expect(lines()[1]).to.include({ level: 'error', message: 'no fields, 100% %s literal' });
  });

  it('writes only lines at or above the configured level, for loggers made before and after', () => {
    const early = logger('early');
    configureLogs({ level: 'warn' });
    early.debug('d');
    early.info('i');
    early.warn('w');
    logger('late').info('i');
    logger('late').error('e');
    expect(lines().map((l) => `${l.scope} ${l.level} ${l.message}`)).to.deep.equal(['early warn w', 'late error e']);
    configureLogs({ level: 'debug' });
    early.debug('d');
    expect(lines().at(-1)).to.include({ level: 'debug', message: 'd' });
  });

  it('redacts fields named like secrets, at the top and inside headers, variables, env and options', () => {
    logger('t').warn('redaction', {
      password: 'hunter2-password',
      token: 'tok-123456',
      apiKey: 'key-abcdef',
      databaseUrl: 'postgres://claw_1:pw-in-url@db/claw_1',
      headers: { authorization: 'Bearer abc-bearer-token', accept: 'text/plain' },
      variables: { DATABASE_URL: 'postgres://u:pw2@h/db', ANTHROPIC_API_KEY: 'model-key-xyz', PLAN: 'pro' },
      env: { ADMIN_TOKEN: 'admin-token-1', SECRETS_KEY: 'c2VjcmV0cw==' },
      options: { secret: 'shh-secret' },
      instance: 'i-1',
    });
    const line = lines()[0]!;
    for (const secret of ['hunter2-password', 'tok-123456', 'key-abcdef', 'pw-in-url', 'abc-bearer-token', 'pw2', 'model-key-xyz', 'admin-token-1', 'c2VjcmV0cw==', 'shh-secret']) {
      expect(written[0], secret).to.not.include(secret);
    }
    expect(line).to.include({ password: REDACTED, token: REDACTED, apiKey: REDACTED, databaseUrl: REDACTED, instance: 'i-1' });
    expect(line.headers).to.deep.equal({ authorization: REDACTED, accept: 'text/plain' });
    expect(line.variables).to.deep.equal({ DATABASE_URL: REDACTED, ANTHROPIC_API_KEY: REDACTED, PLAN: 'pro' });
  });

  it('masks credentials in messages, field values and errors, and the line stays JSON', () => {
    const key = 'claw_' + 'Q'.repeat(43);
    const err = new Error(`connect to postgres://claw_x:s3cr3t-pass@db.internal/claw_x failed with ${key}`);
    logger('t').error(`sent ${key} to "someone"`, { reason: 'Stripe said sk_live_51Habcdefghijkl', err, error: err, note: 'a@b.c' });
    expect(written[0]).to.not.include('s3cr3t-pass').and.not.include('Q'.repeat(20)).and.not.include('51Habcdefghijkl');
    const line = lines()[0]!;
    expect(line.message).to.equal('sent claw_*** to "someone"');
    expect(line.reason).to.equal('Stripe said sk_li***');
    expect(line.note).to.equal('a@b.c');
    expect((line.error as { message: string }).message).to.equal('connect to postgres://***:***@db.internal/claw_x failed with claw_***');
    expect((line.err as { stack: string }).stack).to.include('postgres://***:***@db.internal');
  });

  it('puts the job context on every line logged within it, across awaits, without leaking between jobs', async () => {
    const log = logger('job');
    const run = (id: string, delayMs: number) =>
      withLogContext({ queue: 'provision', job: id, instance: `i-${id}` }, async () => {
        log.info('start');
        await new Promise((r) => setTimeout(r, delayMs));
        addLogContext({ customer: `c-${id}` });
        log.info('end', { instance: 'given by the call' });
      });
    await Promise.all([run('a', 20), run('b', 5)]);
    log.info('outside');
    const byMessage = (job: string, message: string) => lines().find((l) => l.job === job && l.message === message);
    expect(byMessage('a', 'start')).to.include({ queue: 'provision', instance: 'i-a' }).and.not.have.property('customer');
    expect(byMessage('a', 'end')).to.include({ customer: 'c-a', instance: 'given by the call' });
    expect(byMessage('b', 'end')).to.include({ customer: 'c-b', queue: 'provision' });
    expect(lines().at(-1)).to.deep.include({ message: 'outside' }).and.not.have.any.keys('job', 'queue', 'customer');
  });

  it('carries process bindings (the runtime its workspace) on every line', () => {
    configureLogs({ bindings: { workspace: 'ws-1' } });
    logger('runtime').info('listening', { port: 8080 });
    expect(lines()[0]).to.include({ workspace: 'ws-1', scope: 'runtime', port: 8080 });
  });

  it('writes pretty single lines in development, masked too', () => {
    configureLogs({ format: 'pretty' });
    logger('worker').warn('job failed', { reason: 'see postgres://u:pretty-pw@h/db', job: 'j-1' });
    expect(written).to.have.length(1);
    const line = written[0]!;
    expect(line.trimEnd().split('\n')).to.have.length(1);
    expect(line).to.include('WARN').and.include('worker: job failed').and.include('j-1').and.not.include('pretty-pw');
    expect(() => JSON.parse(line)).to.throw();
  });

  describe('maskSecrets', () => {
    it('masks claw_ API keys', () => {
      const key = 'claw_' + 'A1b2C3d4'.repeat(5) + 'xyz';
      const masked = maskSecrets(`created key ${key} for customer`);
      expect(masked).to.equal('created key claw_*** for customer');
      expect(masked).not.to.include('A1b2C3d4');
    });

    it('masks Stripe live and test secret keys', () => {
      expect(maskSecrets('key=sk_live_51Habcdef0123456789')).to.equal('key=sk_li***');
      expect(maskSecrets('key=sk_test_51Habcdef0123456789')).to.equal('key=sk_te***');
    });

    it('masks Stripe webhook signing secrets', () => {
      const masked = maskSecrets('secret whsec_abcdef0123456789ABCDEF done');
      expect(masked).to.equal('secret whsec*** done');
      expect(masked).not.to.include('abcdef0123456789');
    });

    it('masks the credentials of a URL', () => {
      expect(maskSecrets('connecting to postgres://app:hunter2@db.example.com:5432/app')).to.equal(
        'connecting to postgres://***:***@db.example.com:5432/app',
      );
      expect(maskSecrets('smtps://mailer:p4ss%2Fword@smtp.example.com')).to.equal('smtps://***:***@smtp.example.com');
    });

    it('masks every occurrence in one line', () => {
      const masked = maskSecrets(
        'a=sk_live_aaaaaaaa b=whsec_bbbbbbbb c=claw_' + 'c'.repeat(43) + ' d=postgres://u:dddddddd@h/db e=sk_test_eeeeeeee',
      );
      for (const secret of ['aaaaaaaa', 'bbbbbbbb', 'cccccccc', 'dddddddd', 'eeeeeeee']) {
        expect(masked, secret).not.to.include(secret);
      }
    });

    it('leaves ordinary text alone', () => {
      for (const text of [
        'provisioning instance 3f2a9c1e-0000-4000-8000-000000000000 for cus_ABC123',
        'deployed claw-1a2b3c4d at http://127.0.0.1:4100/health',
        'postgres://postgres@127.0.0.1:5432/clawdbot',
        'https://example.com:8443/path?a=1',
        'the claw_ prefix, sk_ keys and whsec_ secrets are masked',
        'price_1SwtCbBfSldKMuDjM3p0kyG4 sub_123 evt_456',
        '',
      ]) {
        expect(maskSecrets(text)).to.equal(text);
      }
    });

    it('masks bearer tokens, and stops at a quote so a JSON line stays JSON', () => {
      expect(maskSecrets('sent Authorization: Bearer test-admin-token-0123 upstream')).to.equal('sent Authorization: Bearer *** upstream');
      const json = JSON.stringify({ a: 'redis://:pw@h:6379', b: 'x@y.z', c: 'Bearer tok' });
      expect(JSON.parse(maskSecrets(json))).to.deep.equal({ a: 'redis://***:***@h:6379', b: 'x@y.z', c: 'Bearer ***' });
    });

    it('masks a URL password with an empty user name (the usual Redis form)', () => {
      expect(maskSecrets('redis://:s3cretpass@redis.example.com:6379')).not.to.include('s3cretpass');
    });

    it('masks Anthropic and restricted Stripe keys, and leaves database names like claw_<hex> readable', () => {
      expect(maskSecrets('key sk-ant-api03-abcDEF_123-xyz here')).not.to.include('abcDEF_123');
      expect(maskSecrets('rk_live_51Habcdef0123')).not.to.include('51Habcdef0123');
      expect(maskSecrets('dropped claw_3ae249c15239595e')).to.equal('dropped claw_3ae249c15239595e');
    });
  });
});
