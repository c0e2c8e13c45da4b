// The OpenAI SDK for JavaScript (`openai` on npm) against Costr: the seed's example as written
// (seed_example.mjs, run as its own program), a stream, a tool loop, a bad key, routing facts.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import { BAD_KEY, BASE, KEY, RUN, WEATHER_SCHEMA, check, expect, weatherIn } from "./report.mjs";

const client = new OpenAI({ apiKey: KEY, baseURL: `${BASE}/v1`, maxRetries: 0 });
const ask = (text) => [{ role: "user", content: text }];

await check("plain", async () => {
  const seed = fileURLToPath(new URL("./seed_example.mjs", import.meta.url));
  const printed = execFileSync(process.execPath, [seed], { encoding: "utf8", env: process.env });
  const [first, ...rest] = printed.trimEnd().split("\n");
  expect(first === "ok", `the seed example printed ${JSON.stringify(first)}, not "ok"`);
  expect(/routed_model: '/.test(rest.join("\n")), `no x_routing printed: ${rest.join(" ")}`);
  return `the seed's example printed "ok" and x_routing`;
});

await check("stream", async () => {
  const stream = await client.chat.completions.create({
    model: "auto", messages: ask(`[${RUN}] Reply exactly: one two three four`), stream: true,
    stream_options: { include_usage: true },
  });
  let text = "", chunks = 0, last;
  for await (const chunk of stream) {
    chunks += 1;
    text += chunk.choices[0]?.delta?.content ?? "";
    last = chunk;
  }
  expect(text === "one two three four", `streamed ${JSON.stringify(text)}`);
  expect(last.x_routing?.routed_model, "no x_routing on the last chunk");
  expect(last.usage?.completion_tokens > 0, "no usage on the last chunk");
  return `${chunks} chunks joined to the answer; usage and x_routing on the last`;
});

await check("tool", async () => {
  const tools = [{ type: "function", function: { name: "get_weather", parameters: WEATHER_SCHEMA } }];
  const messages = ask("What is the weather in Paris?");
  const first = await client.chat.completions.create({ model: "auto", messages, tools });
  const call = first.choices[0].message.tool_calls?.[0];
  expect(call && first.choices[0].finish_reason === "tool_calls", "no tool call");
  const { city } = JSON.parse(call.function.arguments);
  messages.push(first.choices[0].message,
                { role: "tool", tool_call_id: call.id, content: weatherIn(city) });
  const second = await client.chat.completions.create({ model: "auto", messages, tools });
  const text = second.choices[0].message.content;
  expect(text === `Done: ${weatherIn(city)}`, `final answer ${JSON.stringify(text)}`);
  return `get_weather(${call.function.arguments}) -> "${text}"`;
});

await check("auth-error", async () => {
  const stranger = new OpenAI({ apiKey: BAD_KEY, baseURL: `${BASE}/v1`, maxRetries: 0 });
  try {
    await stranger.chat.completions.create({ model: "auto", messages: ask("hello") });
  } catch (error) {
    expect(error instanceof OpenAI.AuthenticationError, `got ${error.constructor.name}`);
    return `OpenAI.AuthenticationError, status ${error.status}`;
  }
  throw new Error("a bad key was answered");
});

await check("routing", async () => {
  const { data, response } = await client.chat.completions
    .create({ model: "auto", messages: ask("Reply exactly: ok") }).withResponse();
  const header = response.headers.get("x-costr-routed-model");
  expect(data.x_routing?.routed_model === header, `x_routing ${JSON.stringify(data.x_routing)}, header ${header}`);
  return `x_routing.routed_model = x-costr-routed-model = ${header}`;
});
