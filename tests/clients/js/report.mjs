// One case's result in the matrix's format (tests/clients/client.py): a JSON line on stdout.
export function report(name, ok, detail = "") {
  process.stdout.write(JSON.stringify({ case: name, ok: Boolean(ok), detail: String(detail) }) + "\n");
}

// Runs one case: its returned string is the PASS detail, anything it throws is the FAIL's.
export async function check(name, body) {
  try {
    report(name, true, (await body()) ?? "");
  } catch (error) {
    const status = error?.status ?? error?.statusCode;
    report(name, false, `${error?.constructor?.name ?? "Error"}${status ? ` ${status}` : ""}: ${error?.message ?? error}`);
  }
}

export function expect(condition, message) {
  if (!condition) throw new Error(message);
}

// The environment every client command gets (client.py).
export const BASE = process.env.COSTR_BASE_URL;
export const KEY = process.env.COSTR_API_KEY;
export const BAD_KEY = process.env.COSTR_BAD_KEY;
export const WEATHER_SCHEMA = {
  type: "object", properties: { city: { type: "string" } }, required: ["city"],
};
// The fake upstream calls the first tool offered with arguments made from its schema
// ({"city": "test"}), then answers the tool's result with "Done: <result>".
export const weatherIn = (city) => `sunny in ${city}`;
// A tag of this run, put before the prompts of streamed cases so no earlier run's cached answer
// (replayed as one piece) stands in for a stream.
export const RUN = Math.random().toString(36).slice(2, 10);
