// The Anthropic SDK for JavaScript (`@anthropic-ai/sdk`) against Costr: messages, a stream, a
// tool loop, token counting, a bad key, routing facts.
import Anthropic from "@anthropic-ai/sdk";
import { BAD_KEY, BASE, KEY, RUN, WEATHER_SCHEMA, check, expect, weatherIn } from "./report.mjs";

const client = new Anthropic({ apiKey: KEY, baseURL: BASE, maxRetries: 0 });
const ask = (text) => [{ role: "user", content: text }];
const textOf = (message) => message.content.filter((b) => b.type === "text").map((b) => b.text).join("");

await check("plain", async () => {
  const message = await client.messages.create({ model: "auto", max_tokens: 64, messages: ask("Reply exactly: ok") });
  expect(textOf(message) === "ok" && message.stop_reason === "end_turn", `answered ${JSON.stringify(message.content)}`);
  return `"ok", stop_reason end_turn, ${message.usage.input_tokens} input tokens`;
});

await check("stream", async () => {
  const stream = client.messages.stream({ model: "auto", max_tokens: 64, messages: ask(`[${RUN}] Reply exactly: one two three four`) });
  let deltas = 0;
  stream.on("text", () => { deltas += 1; });
  const message = await stream.finalMessage();
  expect(textOf(message) === "one two three four", `streamed ${JSON.stringify(textOf(message))}`);
  expect(deltas > 1 && message.usage.output_tokens > 0, `${deltas} text deltas, usage ${JSON.stringify(message.usage)}`);
  return `${deltas} text deltas; finalMessage has the answer and usage`;
});

await check("tool", async () => {
  const tools = [{ name: "get_weather", description: "The weather in a city", input_schema: WEATHER_SCHEMA }];
  const messages = ask("What is the weather in Paris?");
  const first = await client.messages.create({ model: "auto", max_tokens: 256, messages, tools });
  const call = first.content.find((b) => b.type === "tool_use");
  expect(call && first.stop_reason === "tool_use", `no tool_use: ${JSON.stringify(first.content)}`);
  messages.push({ role: "assistant", content: first.content },
                { role: "user", content: [{ type: "tool_result", tool_use_id: call.id, content: weatherIn(call.input.city) }] });
  const second = await client.messages.create({ model: "auto", max_tokens: 256, messages, tools });
  expect(textOf(second) === `Done: ${weatherIn(call.input.city)}`, `final answer ${JSON.stringify(textOf(second))}`);
  return `get_weather(${JSON.stringify(call.input)}) -> "${textOf(second)}"`;
});

await check("count-tokens", async () => {
  const counted = await client.messages.countTokens({ model: "auto", messages: ask("How many tokens is this sentence?") });
  expect(counted.input_tokens > 0, `counted ${JSON.stringify(counted)}`);
  return `messages.countTokens: ${counted.input_tokens} input tokens`;
});

await check("auth-error", async () => {
  const stranger = new Anthropic({ apiKey: BAD_KEY, baseURL: BASE, maxRetries: 0 });
  try {
    await stranger.messages.create({ model: "auto", max_tokens: 16, messages: ask("hello") });
  } catch (error) {
    expect(error instanceof Anthropic.AuthenticationError, `got ${error.constructor.name}`);
    return `Anthropic.AuthenticationError, status ${error.status}`;
  }
  throw new Error("a bad key was answered");
});

await check("routing", async () => {
  const { data, response } = await client.messages
    .create({ model: "auto", max_tokens: 16, messages: ask("Reply exactly: ok") }).withResponse();
  const header = response.headers.get("x-costr-routed-model");
  expect(header && data.x_routing?.routed_model === header, `x_routing ${JSON.stringify(data.x_routing)}, header ${header}`);
  return `x_routing.routed_model = x-costr-routed-model = ${header}`;
});
