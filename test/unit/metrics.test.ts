/** The metrics' pure parts: counting in memory, failure classes, histogram values, and the text format reader. */
import { expect } from 'chai';
import { Counter, Registry } from 'prom-client';
import { failureClass } from '../../src/metrics/failureClass.ts';
import { callResult, FLEET_RUN_BUCKETS, MetricsRecorder } from '../../src/metrics/recorder.ts';
import { fleetRunCounts, histogramValues } from '../../src/metrics/registry.ts';
import { parsePrometheusText, sampleValue } from '../support/prometheusText.ts';

describe('metrics (pure)', () => {
  describe('failureClass', () => {
    const cases: [string, string][] = [
      ['Railway rate limit reached (serviceCreate)', 'rate_limited'],
      ['Neon rate limit (429) while trying to create branch claw_x', 'rate_limited'],
      ['no healthy answer from http://127.0.0.1:4000/health within 30 s (last: HTTP 502)', 'timeout'],
      ['deployment 5f1c… did not finish in 1200 s', 'timeout'],
      ['the neon database was not ready within 900 s: branch creating', 'timeout'],
      ['Railway unreachable (serviceCreate): The operation was aborted due to timeout', 'timeout'],
      ['deployment 5f1c failed: build failed (Dockerfile not found)', 'deployment_failed'],
      ['Railway unreachable (deploy): fetch failed', 'unreachable'],
      ['Neon API did not answer (ECONNREFUSED) while trying to list branches', 'unreachable'],
      ['Railway answered HTTP 503 (serviceCreate)', 'provider_5xx'],
      ['Neon answered HTTP 500 while trying to create branch x', 'provider_5xx'],
      ['Railway refused serviceCreate: Not Authorized', 'provider_4xx'],
      ['Neon rejected the API key (HTTP 401) while trying to list projects', 'provider_4xx'],
      ['Neon answered HTTP 404 while trying to delete branch y', 'provider_4xx'],
      ['Stripe: No such subscription: sub_123', 'provider_4xx'],
      ["price price_x of subscription sub_1 is not one of this product's plans", 'invalid'],
      ['Stripe customer cus_1 has no email address to send the welcome email to', 'invalid'],
      ['no API key was issued: build-workspace has not completed', 'invalid'],
      ['the job stalled too often (its worker died)', 'other'],
      ['something else entirely', 'other'],
    ];
    for (const [reason, expected] of cases) {
      it(`${expected}: ${reason}`, () => expect(failureClass(reason)).to.equal(expected));
    }

    it('is other for no reason', () => {
      expect(failureClass(null)).to.equal('other');
      expect(failureClass('')).to.equal('other');
    });
  });

  describe('recorder', () => {
    it('counts provider calls by result, and when each provider last answered a call successfully', () => {
      const r = new MetricsRecorder();
      const before = Date.now();
      for (const status of [200, 204, 302, 429, 429, 404, 502, undefined]) r.providerCall('railway', status);
      r.providerCall('neon', 429);
      const { families, succeeded } = r.drain();
      expect(Object.fromEntries(families.provider_calls)).to.deep.equal({
        'railway\tok': 3,
        'railway\trate_limited': 2,
        'railway\tclient_error': 1,
        'railway\tserver_error': 1,
        'railway\tnetwork_error': 1,
        'neon\trate_limited': 1,
      });
      expect([...succeeded.keys()]).to.deep.equal(['railway']);
      expect(succeeded.get('railway')).to.be.at.least(before);
      expect(r.drain().families.provider_calls.size).to.equal(0); // drained
    });

    it('classes HTTP answers', () => {
      expect([200, 399, 400, 429, 499, 500, undefined].map(callResult)).to.deep.equal([
        'ok', 'ok', 'client_error', 'rate_limited', 'client_error', 'server_error', 'network_error',
      ]);
    });

    it('counts webhook deliveries by event type, unverified ones and odd types apart', () => {
      const r = new MetricsRecorder();
      r.webhookEvent('checkout.session.completed', 'accepted');
      r.webhookEvent('checkout.session.completed', 'accepted');
      r.webhookEvent(null, 'rejected');
      r.webhookEvent('weird type{with}"quotes"', 'ignored');
      expect(Object.fromEntries(r.drain().families.webhook_events)).to.deep.equal({
        'checkout.session.completed\taccepted': 2,
        'unverified\trejected': 1,
        'other\tignored': 1,
      });
    });

    it('counts a fleet run in its bucket alone, with its duration added up in ms', () => {
      const r = new MetricsRecorder();
      r.fleetRun('monitor', 80); // 0.08 s: the first bucket
      r.fleetRun('monitor', 1000); // exactly 1 s: the bucket of 1
      r.fleetRun('reconcile', 3_600_000); // above the last bound
      r.fleetRun('reconcile', Number.NaN); // not a duration: not counted
      const fields = r.drain().families.fleet_runs;
      const one = FLEET_RUN_BUCKETS.indexOf(1);
      expect(Object.fromEntries(fields)).to.deep.equal({
        'monitor\tb0': 1,
        [`monitor\tb${one}`]: 1,
        'monitor\tsum_ms': 1080,
        [`reconcile\tb${FLEET_RUN_BUCKETS.length}`]: 1,
        'reconcile\tsum_ms': 3_600_000,
      });
    });

    it('takes back counts that could not be written, adding them to newer ones', () => {
      const r = new MetricsRecorder();
      r.providerCall('neon', 200);
      const failed = r.drain();
      r.providerCall('neon', 200);
      r.restore(failed);
      const { families, succeeded } = r.drain();
      expect(families.provider_calls.get('neon\tok')).to.equal(2);
      expect(succeeded.get('neon')).to.be.a('number');
    });
  });

  describe('histogram values', () => {
    it('makes cumulative buckets, +Inf, sum and count per label, with zeros for expected labels without data', () => {
      const rows = [
        { label: 'deploy', bucket: 0, count: 2, sum: 0.3 },
        { label: 'deploy', bucket: 2, count: 1, sum: 4 },
        { label: 'deploy', bucket: 3, count: 1, sum: 99 },
      ];
      const values = histogramValues('h', [0.5, 1, 5], 'step', ['deploy', 'finalize'], rows);
      const of = (metricName: string, labels: object) => values.find((v) => v.metricName === metricName && JSON.stringify(v.labels) === JSON.stringify(labels))?.value;
      expect([0.5, 1, 5, '+Inf'].map((le) => of('h_bucket', { step: 'deploy', le }))).to.deep.equal([2, 2, 3, 4]);
      expect(of('h_count', { step: 'deploy' })).to.equal(4);
      expect(of('h_sum', { step: 'deploy' })).to.be.closeTo(103.3, 1e-9);
      expect([0.5, 1, 5, '+Inf'].map((le) => of('h_bucket', { step: 'finalize', le }))).to.deep.equal([0, 0, 0, 0]);
      expect(of('h_count', { step: 'finalize' })).to.equal(0);
    });

    it('reads fleet run fields as bucket counts', () => {
      const counts = fleetRunCounts(new Map([['monitor\tb2', 3], ['monitor\tsum_ms', 1500], ['junk', 1]]));
      expect(counts).to.deep.equal([
        { label: 'monitor', bucket: 2, count: 3, sum: 0 },
        { label: 'monitor', bucket: 0, count: 0, sum: 1.5 },
      ]);
    });
  });

  describe('the text format reader (test support)', () => {
    it("reads prom-client's own output", async () => {
      const registry = new Registry();
      const c = new Counter({ name: 'x_total', help: 'A "quoted" help\\ text', labelNames: ['a'], registers: [registry] });
      c.inc({ a: 'with "quotes" and \\ backslash' }, 2);
      const families = parsePrometheusText(await registry.metrics());
      expect(families.get('x_total')!.type).to.equal('counter');
      expect(sampleValue(families, 'x_total', { a: 'with "quotes" and \\ backslash' })).to.equal(2);
    });

    it('refuses samples of undeclared families, a TYPE without HELP, and broken histograms', () => {
      expect(() => parsePrometheusText('x 1\n')).to.throw(/no declared family/);
      expect(() => parsePrometheusText('# TYPE x gauge\nx 1\n')).to.throw(/without its HELP/);
      expect(() => parsePrometheusText('# HELP x h\n# TYPE x gauge\nx{a=b} 1\n')).to.throw(/bad labels/);
      const histogram = (buckets: string) => `# HELP h h\n# TYPE h histogram\n${buckets}h_sum 1\nh_count 2\n`;
      expect(() => parsePrometheusText(histogram('h_bucket{le="1"} 2\nh_bucket{le="+Inf"} 2\n'))).not.to.throw();
      expect(() => parsePrometheusText(histogram('h_bucket{le="1"} 3\nh_bucket{le="+Inf"} 2\n'))).to.throw(/not cumulative/);
      expect(() => parsePrometheusText(histogram('h_bucket{le="1"} 1\nh_bucket{le="+Inf"} 1\n'))).to.throw(/not the count/);
    });
  });
});
