// The official `openai` npm client as an agent would use lmc's server: a
// tool round trip (tools -> tool_calls -> tool message -> answer), a
// json_schema structured reply, and the Responses API (plain, with a
// function tool, streamed). Environment (set by test_openai_agent):
// LMC_URL, OPENAI_MODULE (file URL of the package's entry).
import assert from 'node:assert/strict';

const { default: OpenAI } = await import(process.env.OPENAI_MODULE);
const client = new OpenAI({ baseURL: process.env.LMC_URL, apiKey: 'unused', maxRetries: 0 });
const model = 'tiny';
let checks = 0;
const check = (name, fn) => fn().then(() => { checks++; console.log(`ok ${name}`); });

const tools = [{
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather of a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string', maxLength: 10 }, unit: { enum: ['celsius', 'fahrenheit'] } },
      required: ['city', 'unit'],
    },
  },
}];

await check('tool round trip', async () => {
  const messages = [{ role: 'user', content: 'Weather in Paris?' }];
  const r = await client.chat.completions.create({
    model, messages, tools, tool_choice: 'required', temperature: 1, seed: 7, max_tokens: 80,
  });
  const choice = r.choices[0];
  assert.equal(choice.finish_reason, 'tool_calls');
  const calls = choice.message.tool_calls;
  assert.equal(calls.length, 1);
  assert.equal(calls[0].type, 'function');
  assert.equal(calls[0].function.name, 'get_weather');
  const args = JSON.parse(calls[0].function.arguments);
  assert.equal(typeof args.city, 'string');
  assert.ok(['celsius', 'fahrenheit'].includes(args.unit));
  // this Qwen3 template reads the assistant content as a string
  messages.push({ ...choice.message, content: choice.message.content ?? '' });
  messages.push({ role: 'tool', tool_call_id: calls[0].id, content: '{"temperature": 18}' });
  const answer = await client.chat.completions.create({ model, messages, tools, max_tokens: 6 });
  assert.equal(typeof answer.choices[0].message.content, 'string');
  assert.ok(['length', 'stop', 'tool_calls'].includes(answer.choices[0].finish_reason));
});

await check('tool call streamed', async () => {
  const stream = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Weather?' }], tools,
    tool_choice: { type: 'function', function: { name: 'get_weather' } },
    temperature: 1, seed: 3, max_tokens: 80, stream: true,
  });
  let name = '', args = '', finish = null;
  for await (const chunk of stream)
    for (const c of chunk.choices) {
      for (const t of c.delta.tool_calls ?? []) {
        if (t.function?.name) name += t.function.name;
        if (t.function?.arguments) args += t.function.arguments;
      }
      if (c.finish_reason) finish = c.finish_reason;
    }
  assert.equal(name, 'get_weather');
  assert.equal(finish, 'tool_calls');
  assert.equal(typeof JSON.parse(args).city, 'string');
});

const schema = {
  type: 'object',
  properties: { name: { type: 'string', maxLength: 8 }, age: { type: 'integer', minimum: 0, maximum: 120 } },
  required: ['name', 'age'], additionalProperties: false,
};

await check('json_schema', async () => {
  const r = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'A person?' }], temperature: 1, seed: 11, max_tokens: 100,
    response_format: { type: 'json_schema', json_schema: { name: 'person', strict: true, schema } },
  });
  const v = JSON.parse(r.choices[0].message.content);
  assert.deepEqual(Object.keys(v), ['name', 'age']);
  assert.ok(Number.isInteger(v.age) && v.age >= 0 && v.age <= 120);
  assert.ok([...v.name].length <= 8);
});

await check('responses.create', async () => {
  const r = await client.responses.create({ model, instructions: 'Be brief.', input: 'Hi', max_output_tokens: 6 });
  assert.equal(r.object, 'response');
  assert.equal(typeof r.output_text, 'string');
  assert.equal(r.usage.output_tokens, 6);
});

await check('responses function call + structured text', async () => {
  const r = await client.responses.create({
    model, input: [{ role: 'user', content: 'Weather?' }], temperature: 1, max_output_tokens: 80,
    tools: [{ type: 'function', ...tools[0].function }], tool_choice: { type: 'function', name: 'get_weather' },
  });
  const call = r.output.find((o) => o.type === 'function_call');
  assert.equal(call.name, 'get_weather');
  const followUp = await client.responses.create({
    model, max_output_tokens: 100, temperature: 1,
    input: [{ role: 'user', content: 'Weather?' }, call,
            { type: 'function_call_output', call_id: call.call_id, output: '{"temperature": 18}' }],
    text: { format: { type: 'json_schema', name: 'person', strict: true, schema } },
  });
  const v = JSON.parse(followUp.output_text);
  assert.ok(Number.isInteger(v.age));
});

await check('responses stream', async () => {
  const stream = await client.responses.create({ model, input: 'Hi', max_output_tokens: 6, stream: true });
  let text = '', final = null;
  for await (const ev of stream) {
    if (ev.type === 'response.output_text.delta') text += ev.delta;
    if (ev.type === 'response.completed' || ev.type === 'response.incomplete') final = ev.response;
  }
  assert.ok(final);
  assert.equal(final.output.find((o) => o.type === 'message').content[0].text, text);
});

console.log(`openai_agent: ${checks} checks passed`);
