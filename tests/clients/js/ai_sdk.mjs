// The Vercel AI SDK (`ai`) against Costr through one of its providers, named by the argument:
//   compatible   @ai-sdk/openai-compatible, createOpenAICompatible(...)("auto")
//   openai       @ai-sdk/openai, openai("auto"): the Responses API (POST /v1/responses)
//   openai-chat  @ai-sdk/openai, openai.chat("auto"): Chat Completions
//   anthropic    @ai-sdk/anthropic, anthropic("auto"): Messages
// Cases: generateText, streamText, a tool the SDK runs between two steps, a bad key, routing
// facts (the x-costr-* headers: the SDK hides the body's x_routing).
import { APICallError, generateText, isStepCount, jsonSchema, streamText, tool } from "ai";
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { BAD_KEY, BASE, KEY, RUN, WEATHER_SCHEMA, check, expect, weatherIn } from "./report.mjs";

const PROVIDERS = {
  compatible: (apiKey) => createOpenAICompatible({ name: "costr", baseURL: `${BASE}/v1`, apiKey })("auto"),
  openai: (apiKey) => createOpenAI({ baseURL: `${BASE}/v1`, apiKey })("auto"),
  "openai-chat": (apiKey) => createOpenAI({ baseURL: `${BASE}/v1`, apiKey }).chat("auto"),
  anthropic: (apiKey) => createAnthropic({ baseURL: `${BASE}/v1`, apiKey })("auto"),
};
const provider = PROVIDERS[process.argv[2]];
if (!provider) throw new Error(`usage: ai_sdk.mjs ${Object.keys(PROVIDERS).join("|")}`);
const model = provider(KEY);

await check("plain", async () => {
  const result = await generateText({ model, prompt: "Reply exactly: ok", maxRetries: 0 });
  expect(result.text === "ok", `answered ${JSON.stringify(result.text)}`);
  expect(result.usage.outputTokens > 0, `usage ${JSON.stringify(result.usage)}`);
  return `generateText: "ok", finishReason ${result.finishReason}, ${result.usage.inputTokens} input tokens`;
});

await check("stream", async () => {
  const result = streamText({ model, prompt: `[${RUN}] Reply exactly: one two three four`, maxRetries: 0,
                              onError: () => {} });
  const pieces = [];
  for await (const piece of result.textStream) pieces.push(piece);
  const text = pieces.join("");
  expect(pieces.length > 1 && text === "one two three four", `streamed ${JSON.stringify(text)}: ${await errorOf(result)}`);
  // openai-compatible asks for a stream's usage only when told to (includeUsage), as OpenAI
  // sends none otherwise
  const usage = await result.usage;
  expect(process.argv[2] === "compatible" || usage.outputTokens > 0, `usage ${JSON.stringify(usage)}`);
  return `streamText: ${pieces.length} pieces joined to the answer, finishReason ${await result.finishReason}`;
});

await check("tool", async () => {
  const seen = [];
  const getWeather = tool({
    description: "The weather in a city",
    inputSchema: jsonSchema(WEATHER_SCHEMA),
    execute: async ({ city }) => { seen.push(city); return weatherIn(city); },
  });
  const result = await generateText({
    model, prompt: "What is the weather in Paris?", tools: { get_weather: getWeather },
    stopWhen: isStepCount(3), maxRetries: 0,
  });
  expect(seen.length === 1, `the tool ran ${seen.length} times`);
  expect(result.text === `Done: ${weatherIn(seen[0])}`, `final answer ${JSON.stringify(result.text)}`);
  return `get_weather({city: "${seen[0]}"}) ran; ${result.steps.length} steps; "${result.text}"`;
});

await check("auth-error", async () => {
  try {
    await generateText({ model: provider(BAD_KEY), prompt: "hello", maxRetries: 0 });
  } catch (error) {
    expect(APICallError.isInstance(error) && error.statusCode === 401,
           `got ${error.constructor.name} ${error.statusCode}: ${error.message}`);
    return `APICallError, statusCode 401: ${error.message}`;
  }
  throw new Error("a bad key was answered");
});

await check("routing", async () => {
  const result = await generateText({ model, prompt: "Reply exactly: ok", maxRetries: 0 });
  const headers = result.response.headers ?? {};
  const routed = headers["x-costr-routed-model"];
  expect(routed && headers["x-costr-tier"], `response headers ${JSON.stringify(headers)}`);
  return `x-costr-routed-model ${routed}, x-costr-tier ${headers["x-costr-tier"]}`;
});

async function errorOf(result) {
  try {
    await result.text;
    return "no error";
  } catch (error) {
    return `${error.constructor.name}: ${error.message}`;
  }
}
