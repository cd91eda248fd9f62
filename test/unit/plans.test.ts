import { expect } from 'chai';
import {
  ALL_FEATURES,
  DEFAULT_PRICE_IDS,
  PLANS,
  cheapestPlanWith,
  isPlanName,
  planByName,
  planForPrice,
  requestRate,
  type PlanName,
} from '../../core/plans.ts';
import { parseRate } from '../../core/durations.ts';

describe('plans', () => {
  describe('planForPrice', () => {
    it('maps each default price id to its plan', () => {
      expect(planForPrice(DEFAULT_PRICE_IDS.starter, DEFAULT_PRICE_IDS)).to.equal(PLANS.starter);
      expect(planForPrice(DEFAULT_PRICE_IDS.pro, DEFAULT_PRICE_IDS)).to.equal(PLANS.pro);
      expect(planForPrice(DEFAULT_PRICE_IDS.team, DEFAULT_PRICE_IDS)).to.equal(PLANS.team);
    });

    it('returns undefined for a price this product does not sell', () => {
      expect(planForPrice('price_unknown', DEFAULT_PRICE_IDS)).to.equal(undefined);
      expect(planForPrice('', DEFAULT_PRICE_IDS)).to.equal(undefined);
      expect(planForPrice(DEFAULT_PRICE_IDS.pro.toLowerCase(), DEFAULT_PRICE_IDS)).to.equal(undefined);
    });

    it('uses overridden price ids instead of the defaults', () => {
      const overridden: Record<PlanName, string> = { starter: 'price_test_s', pro: 'price_test_p', team: 'price_test_t' };
      expect(planForPrice('price_test_s', overridden)).to.equal(PLANS.starter);
      expect(planForPrice('price_test_p', overridden)).to.equal(PLANS.pro);
      expect(planForPrice('price_test_t', overridden)).to.equal(PLANS.team);
      expect(planForPrice(DEFAULT_PRICE_IDS.starter, overridden)).to.equal(undefined);
    });

    it('has a distinct default price for every plan', () => {
      expect(Object.keys(DEFAULT_PRICE_IDS).sort()).to.deep.equal(['pro', 'starter', 'team']);
      expect(new Set(Object.values(DEFAULT_PRICE_IDS)).size).to.equal(3);
    });
  });

  describe('limits and features', () => {
    it('Starter: 5,000 messages, 60 requests a minute, 3 agents, chat+memory+web_search, 0.5 CPU / 512 MB / 100 MB', () => {
      expect(PLANS.starter).to.deep.include({
        name: 'starter',
        title: 'Starter',
        messageLimit: 5000,
        requestsPerMinute: 60,
        agentLimit: 3,
        cpu: 0.5,
        memoryMb: 512,
        databaseMb: 100,
        backupsKept: 3,
      });
      expect(PLANS.starter.features).to.deep.equal(['chat', 'memory', 'web_search']);
    });

    it('Pro: 20,000 messages, 120 requests a minute, 10 agents, adds gmail+calendar+browser, 1 CPU / 1 GB / 500 MB', () => {
      expect(PLANS.pro).to.deep.include({
        name: 'pro',
        title: 'Pro',
        messageLimit: 20000,
        requestsPerMinute: 120,
        agentLimit: 10,
        cpu: 1,
        memoryMb: 1024,
        databaseMb: 500,
        backupsKept: 7,
      });
      expect(PLANS.pro.features).to.deep.equal(['chat', 'memory', 'web_search', 'gmail', 'calendar', 'browser']);
    });

    it('Team: 100,000 messages, 300 requests a minute, unlimited agents, every feature, 2 CPU / 2 GB / 2 GB', () => {
      expect(PLANS.team).to.deep.include({
        name: 'team',
        title: 'Team',
        messageLimit: 100000,
        requestsPerMinute: 300,
        agentLimit: null,
        cpu: 2,
        memoryMb: 2048,
        databaseMb: 2048,
        backupsKept: 30,
      });
      expect([...PLANS.team.features]).to.have.members([...ALL_FEATURES]);
      expect(PLANS.team.features).to.have.length(8);
    });

    it('each plan includes everything the cheaper one does', () => {
      for (const f of PLANS.starter.features) expect(PLANS.pro.features).to.include(f);
      for (const f of PLANS.pro.features) expect(PLANS.team.features).to.include(f);
    });

    it('each plan allows more of every limit than the cheaper one', () => {
      const order = [PLANS.starter, PLANS.pro, PLANS.team];
      for (let i = 1; i < order.length; i++) {
        const [cheaper, plan] = [order[i - 1]!, order[i]!];
        for (const limit of ['messageLimit', 'requestsPerMinute', 'toolRounds', 'webSearchMaxUses', 'cpu', 'memoryMb', 'databaseMb', 'backupsKept'] as const) {
          expect(plan[limit], `${plan.name} ${limit}`).to.be.greaterThan(cheaper[limit]);
        }
      }
    });

    it('gives the runtime each plan\'s request rate as RATE_LIMIT, which parses back to the same rate', () => {
      for (const plan of Object.values(PLANS)) {
        expect(requestRate(plan)).to.equal(`${plan.requestsPerMinute}/m`);
        expect(parseRate(requestRate(plan))).to.deep.equal({ max: plan.requestsPerMinute, durationMs: 60_000 });
      }
    });

    it('each plan is keyed by its own name', () => {
      for (const [key, plan] of Object.entries(PLANS)) expect(plan.name).to.equal(key);
    });
  });

  describe('isPlanName / planByName', () => {
    it('accepts the three plan names', () => {
      for (const name of ['starter', 'pro', 'team']) expect(isPlanName(name)).to.equal(true);
    });

    it('rejects inherited object keys, empty strings, wrong case and non-strings', () => {
      for (const value of ['constructor', '__proto__', 'toString', 'hasOwnProperty', '', 'Starter', ' pro', 'enterprise']) {
        expect(isPlanName(value), JSON.stringify(value)).to.equal(false);
      }
      for (const value of [undefined, null, 1, {}, ['pro']]) expect(isPlanName(value)).to.equal(false);
    });

    it('planByName returns the plan or undefined', () => {
      expect(planByName('pro')).to.equal(PLANS.pro);
      expect(planByName('constructor')).to.equal(undefined);
      expect(planByName('__proto__')).to.equal(undefined);
    });
  });

  describe('cheapestPlanWith', () => {
    it('names the cheapest plan that includes each feature', () => {
      const expected: Record<string, PlanName> = {
        chat: 'starter',
        memory: 'starter',
        web_search: 'starter',
        gmail: 'pro',
        calendar: 'pro',
        browser: 'pro',
        github: 'team',
        custom_skills: 'team',
      };
      for (const feature of ALL_FEATURES) expect(cheapestPlanWith(feature).name, feature).to.equal(expected[feature]);
    });
  });
});
