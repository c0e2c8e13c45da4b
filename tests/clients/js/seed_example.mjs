import OpenAI from "openai";
const client = new OpenAI({
apiKey: process.env.COSTR_API_KEY,
baseURL: `${process.env.COSTR_BASE_URL}/v1`,
});
const completion = await client.chat.completions.create({
model: "auto",
messages: [{ role: "user", content: "Reply exactly: ok" }],
max_tokens: 32,
});
console.log(completion.choices[0].message.content);
console.log(completion.x_routing);
