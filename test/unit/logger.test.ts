import { expect } from 'chai';
import { maskSecrets } from '../../core/logger.ts';

describe('logger', () => {
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
