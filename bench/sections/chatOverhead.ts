/**
 * Chat overhead: what the runtime adds to the model's latency on POST /api/chat. A runtime in its own child
 * process (its database, rendered workspace, a thousand memories) answers sequential turns of one conversation
 * against the Anthropic emulator holding every answer for a set latency. The anchor, in the same run and
 * interleaved turn by turn: the very request the runtime sent the model for that turn (system prompt, history),
 * made straight to the emulator with the @anthropic-ai/sdk client (its tools and beta header included). What is
 * left over is the runtime's own work: the HTTP hop, the key and rate limit, the usage reservation, history, memory
 * search, skills, the tools, prompt building and storing the turn.
 */
import { performance } from 'node:perf_hooks';
import Anthropic from '@anthropic-ai/sdk';
import type { BetaMessageParam, BetaToolUnion } from '@anthropic-ai/sdk/resources/beta/messages/messages';
import { startAnthropicEmulator } from '../../test/emulators/anthropicEmulator.ts';
import { startRuntimeFixture } from '../../test/support/runtimeFixture.ts';
import { percentile, sized, type BenchRow, type BenchSection } from '../lib/report.ts';

const GOAL_MS = 5;
const MEMORIES = 1_000;
const MESSAGES = [
  'What do I usually drink in the morning?',
  'Remind me what we decided about the quarterly report.',
  'Draft a short reply to the dentist confirming Tuesday at 10.',
  'Which of my projects mention the calendar sync?',
  'Summarise what you know about my travel plans for March.',
];

const chatOverhead: BenchSection = async (options) => {
  const turns = sized('CHAT_TURNS', options, { smoke: 20, full: 300 });
  const latencyMs = sized('CHAT_MODEL_LATENCY_MS', options, { smoke: 50, full: 50 });
  const warmup = Math.min(20, Math.ceil(turns / 4));

  const model = await startAnthropicEmulator();
  try {
    model.latency(latencyMs);
    const runtime = await startRuntimeFixture({
      plan: 'team',
      childProcess: true,
      // The bench measures the chat path, not the plan's request rate.
      env: { NODE_ENV: 'production', ANTHROPIC_API_KEY: model.apiKey, ANTHROPIC_BASE_URL: model.url, RATE_LIMIT: '1000/s' },
    });
    try {
      await runtime.db.query(
        `INSERT INTO memories (content, tags)
         SELECT 'Fact ' || i || ': the customer ' || (ARRAY['drinks tea in the morning', 'travels to Lisbon in March',
                'owns the calendar sync project', 'sees the dentist on Tuesdays', 'writes the quarterly report'])[1 + i % 5],
                ARRAY['fact', 'batch-' || (i % 10)]
           FROM generate_series(1, $1::int) AS i`,
        [MEMORIES],
      );
      const client = new Anthropic({ apiKey: model.apiKey, baseURL: model.url, maxRetries: 0 });
      const chat: number[] = [];
      const anchor: number[] = [];
      let conversationId: string | undefined;
      for (let i = 0; i < warmup + turns; i++) {
        const message = `${MESSAGES[i % MESSAGES.length]} (turn ${i + 1})`;
        const startedChat = performance.now();
        const response = await fetch(`${runtime.url}/api/chat`, {
          method: 'POST',
          headers: { authorization: `Bearer ${runtime.key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ message, conversationId }),
        });
        const body = (await response.json()) as { conversationId: string; reply: string };
        const chatMs = performance.now() - startedChat;
        if (response.status !== 200) throw new Error(`chat answered ${response.status}: ${JSON.stringify(body)}`);
        conversationId = body.conversationId;

        const { body: sent, headers } = model.lastRequest()!;
        const startedAnchor = performance.now();
        const direct = await client.beta.messages.create({
          model: sent.model,
          max_tokens: sent.max_tokens,
          system: sent.system as string,
          messages: sent.messages as BetaMessageParam[],
          tools: sent['tools'] as BetaToolUnion[],
          betas: String(headers['anthropic-beta'] ?? '').split(',').filter(Boolean),
        });
        const anchorMs = performance.now() - startedAnchor;
        if (direct.content[0]?.type !== 'text' || direct.content[0].text !== body.reply) throw new Error('the anchor got another reply');
        if (i >= warmup) {
          chat.push(chatMs);
          anchor.push(anchorMs);
        }
      }

      const row = (p: 50 | 95): BenchRow => {
        const [chatP, anchorP] = [percentile(chat, p), percentile(anchor, p)];
        const value = chatP - anchorP;
        return {
          figure: `chat overhead p${p} over the model's latency, ${turns} sequential turns`,
          anchor: `the same model request straight to the emulator (SDK), p${p}`,
          anchorValue: anchorP,
          value,
          unit: 'ms',
          better: 'lower',
          goal: `≤ ${GOAL_MS} ms`,
          met: value <= GOAL_MS,
          note:
            `chat p${p} ${chatP.toFixed(1)} ms, anchor p${p} ${anchorP.toFixed(1)} ms; model latency ${latencyMs} ms; ` +
            `runtime in its own process, ${MEMORIES} memories, ${warmup} warm-up turns not counted`,
        };
      };
      return [row(50), row(95)];
    } finally {
      await runtime.close();
    }
  } finally {
    await model.close();
  }
};

export default chatOverhead;
