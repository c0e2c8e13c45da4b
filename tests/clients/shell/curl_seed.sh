#!/usr/bin/env bash
# The seed's curl examples, as written apart from the host, then a stream, a tool loop, a bad
# key, the usage endpoints and the routing facts, each reported as one JSON line (client.py).
# Needs curl and python3 (to read the JSON answers).
set -uo pipefail
HOST="$COSTR_BASE_URL"
RUN=$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
report() { python3 -c 'import json,sys; print(json.dumps({"case": sys.argv[1], "ok": sys.argv[2] == "1", "detail": sys.argv[3]}))' "$@"; }

# -- plain: both seed examples, verbatim apart from the host
openai=$(curl --location --request POST "$HOST/v1/chat/completions" \
--header "Authorization: Bearer $COSTR_API_KEY" \
--header "Content-Type: application/json" \
--data-raw '{
"model": "auto",
"messages": [
{"role": "user", "content": "Reply exactly: ok"}
],
"max_tokens": 32
}' -s)
anthropic=$(curl --location --request POST "$HOST/v1/messages" \
--header "x-api-key: $COSTR_API_KEY" \
--header "anthropic-version: 2023-06-01" \
--header "Content-Type: application/json" \
--data-raw '{
"model": "auto",
"max_tokens": 32,
"messages": [
{"role": "user", "content": "Reply exactly: ok"}
]
}' -s)
a=$(echo "$openai" | json 'd["choices"][0]["message"]["content"]' 2>&1)
b=$(echo "$anthropic" | json 'd["content"][0]["text"]' 2>&1)
[ "$a" = ok ] && [ "$b" = ok ]; report plain "$([ $? = 0 ] && echo 1 || echo 0)" "chat completions answered '$a', messages answered '$b'"

# -- stream: chunks of one answer, x_routing on the last data line before [DONE]
stream=$(curl -sN "$HOST/v1/chat/completions" -H "Authorization: Bearer $COSTR_API_KEY" \
  -H "Content-Type: application/json" \
  -d "{\"model\":\"auto\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"[$RUN] Reply exactly: one two three four\"}]}")
text=$(echo "$stream" | python3 -c '
import json, sys
lines = [l[6:] for l in sys.stdin.read().splitlines() if l.startswith("data: ")]
chunks = [json.loads(l) for l in lines if l != "[DONE]"]
text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c.get("choices"))
print("|".join([text, str(len(chunks)), lines[-1], str(bool(chunks[-1].get("x_routing")))]))')
IFS='|' read -r said count done routed <<< "$text"
[ "$said" = "one two three four" ] && [ "$done" = "[DONE]" ] && [ "$routed" = True ]
report stream "$([ $? = 0 ] && echo 1 || echo 0)" "$count chunks joined to '$said', x_routing on the last, then [DONE]"

# -- tool: the model calls get_weather, its result goes back as a tool message
tools='[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]'
first=$(curl -s "$HOST/v1/chat/completions" -H "Authorization: Bearer $COSTR_API_KEY" -H "Content-Type: application/json" \
  -d "{\"model\":\"auto\",\"tools\":$tools,\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Paris?\"}]}")
call=$(echo "$first" | json 'json.dumps(d["choices"][0]["message"]["tool_calls"][0])' 2>/dev/null)
id=$(echo "$call" | json 'd["id"]' 2>/dev/null)
second=$(curl -s "$HOST/v1/chat/completions" -H "Authorization: Bearer $COSTR_API_KEY" -H "Content-Type: application/json" \
  -d "{\"model\":\"auto\",\"tools\":$tools,\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Paris?\"},{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[$call]},{\"role\":\"tool\",\"tool_call_id\":\"$id\",\"content\":\"sunny\"}]}")
final=$(echo "$second" | json 'd["choices"][0]["message"]["content"]' 2>&1)
[ "$final" = "Done: sunny" ]; report tool "$([ $? = 0 ] && echo 1 || echo 0)" "tool call $id, then '$final'"

# -- auth-error: 401 with OpenAI's error body, and Anthropic's on /v1/messages
status=$(curl -s -o /tmp/costr-curl-$RUN.json -w '%{http_code}' "$HOST/v1/chat/completions" \
  -H "Authorization: Bearer $COSTR_BAD_KEY" -H "Content-Type: application/json" -d '{"model":"auto","messages":[{"role":"user","content":"hi"}]}')
kind=$(json 'd["error"]["type"]' < /tmp/costr-curl-$RUN.json 2>&1)
status2=$(curl -s -o /tmp/costr-curl-$RUN.json -w '%{http_code}' "$HOST/v1/messages" -H "x-api-key: $COSTR_BAD_KEY" \
  -H "anthropic-version: 2023-06-01" -H "Content-Type: application/json" -d '{"model":"auto","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}')
kind2=$(json 'd["type"] + "/" + d["error"]["type"]' < /tmp/costr-curl-$RUN.json 2>&1)
rm -f /tmp/costr-curl-$RUN.json
[ "$status" = 401 ] && [ "$kind" = authentication_error ] && [ "$status2" = 401 ] && [ "$kind2" = error/authentication_error ]
report auth-error "$([ $? = 0 ] && echo 1 || echo 0)" "HTTP $status $kind; HTTP $status2 $kind2"

# -- routing: x_routing in both answers, the x-costr-* headers, and the usage endpoints
r1=$(echo "$openai" | json 'd["x_routing"]["routed_model"]' 2>&1)
r2=$(echo "$anthropic" | json 'd["x_routing"]["routed_model"]' 2>&1)
header=$(curl -s -D - -o /dev/null "$HOST/v1/chat/completions" -H "Authorization: Bearer $COSTR_API_KEY" -H "Content-Type: application/json" \
  -d '{"model":"auto","messages":[{"role":"user","content":"Reply exactly: ok"}]}' | tr -d '\r' | sed -n 's/^x-costr-routed-model: //Ip')
usage=$(curl -s "$HOST/v1/usage" -H "Authorization: Bearer $COSTR_API_KEY" | json 'd["data"][0]["requests"]' 2>&1)
[ -n "$r1" ] && [ "$r1" = "$header" ] && [ -n "$r2" ] && [ "$usage" -gt 0 ] 2>/dev/null
report routing "$([ $? = 0 ] && echo 1 || echo 0)" "x_routing.routed_model $r1 / $r2, header $header, /v1/usage counts $usage requests today"
