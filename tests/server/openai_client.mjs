// The official `openai` npm client against a running `lmc serve`: the
// client must parse every reply (models list, chat and completions, plain
// and streamed with stream_options.include_usage, logprobs) and surface
// errors as its typed exceptions (400 context_length_exceeded, 401).
// Environment (set by test_openai_client): LMC_URL, LMC_KEY, OPENAI_MODULE
// (file URL of the package's entry), EXPECT_COMPLETION and EXPECT_CHAT
// (the greedy texts lmc_generate gives for the same inputs), LONG_PROMPT.
import assert from 'node:assert/strict';

const { default: OpenAI } = await import(process.env.OPENAI_MODULE);
const client = new OpenAI({ baseURL: process.env.LMC_URL, apiKey: process.env.LMC_KEY, maxRetries: 0 });
const expectCompletion = process.env.EXPECT_COMPLETION;
const expectChat = process.env.EXPECT_CHAT;
const messages = [{ role: 'user', content: 'Hello' }];
let checks = 0;
const check = (name, fn) => fn().then(() => { checks++; console.log(`ok ${name}`); });

await check('models.list', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids, ['cli-tiny']);
});

await check('completions.create', async () => {
  const r = await client.completions.create({ model: 'cli-tiny', prompt: 'Once upon a time', max_tokens: 8 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices[0].text, expectCompletion);
  assert.ok(['length', 'stop'].includes(r.choices[0].finish_reason));
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

await check('chat.completions.create', async () => {
  const r = await client.chat.completions.create({ model: 'cli-tiny', messages, max_tokens: 8 });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].message.content, expectChat);
  assert.ok(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 8);
});

await check('chat stream with include_usage', async () => {
  const stream = await client.chat.completions.create({
    model: 'cli-tiny', messages, max_tokens: 8, stream: true, stream_options: { include_usage: true },
  });
  let text = '', usage = null, finish = null, role = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta.role) role = c.delta.role;
      if (c.delta.content) text += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(role, 'assistant');
  assert.equal(text, expectChat);
  assert.ok(finish === 'length' || finish === 'stop');
  assert.ok(usage && usage.completion_tokens >= 1 && usage.prompt_tokens > 0);
});

await check('completions stream', async () => {
  const stream = await client.completions.create({
    model: 'cli-tiny', prompt: 'Once upon a time', max_tokens: 8, stream: true, stream_options: { include_usage: true },
  });
  let text = '', usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) text += c.text;
  }
  assert.equal(text, expectCompletion);
  assert.ok(usage && usage.total_tokens === usage.prompt_tokens + usage.completion_tokens);
});

await check('chat logprobs', async () => {
  const r = await client.chat.completions.create({
    model: 'cli-tiny', messages, max_tokens: 4, logprobs: true, top_logprobs: 3,
  });
  const lp = r.choices[0].logprobs.content;
  assert.equal(lp.length, r.usage.completion_tokens);
  for (const t of lp) {
    assert.equal(typeof t.token, 'string');
    assert.ok(t.logprob <= 0);
    assert.equal(t.top_logprobs.length, 3);
    assert.ok(t.top_logprobs[0].logprob >= t.logprob - 1e-6);
  }
});

await check('completions logprobs', async () => {
  const r = await client.completions.create({ model: 'cli-tiny', prompt: 'Once upon a time', max_tokens: 3, logprobs: 2 });
  const lp = r.choices[0].logprobs;
  assert.equal(lp.tokens.length, r.usage.completion_tokens);
  assert.equal(lp.token_logprobs.length, lp.tokens.length);
  assert.equal(lp.top_logprobs.length, lp.tokens.length);
});

await check('context too long -> BadRequestError', async () => {
  await assert.rejects(
    client.completions.create({ model: 'cli-tiny', prompt: process.env.LONG_PROMPT, max_tokens: 4 }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.code === 'context_length_exceeded',
  );
});

await check('bad key -> AuthenticationError', async () => {
  const bad = new OpenAI({ baseURL: process.env.LMC_URL, apiKey: 'wrong', maxRetries: 0 });
  await assert.rejects(
    bad.chat.completions.create({ model: 'cli-tiny', messages }),
    (e) => e instanceof OpenAI.AuthenticationError && e.status === 401 && e.code === 'invalid_api_key',
  );
});

await check('bad field -> BadRequestError naming it', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'cli-tiny', messages, temperature: -1 }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'temperature',
  );
});

console.log(`openai_client: ${checks} checks passed`);
