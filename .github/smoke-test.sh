#!/bin/bash
# The release's smoke test: for every system in SYSTEMS_JSON (the root's
# `terraform output -json systems`), through its deployed URL:
#   GET /health        200 {"status":"ok"}
#   GET /health?ready  200: the new revision has an answer to serve
#   GET /datos         200, a JSON object with "datos"
#   one POST /datos    202 with the smoke user (SMOKE_CREDENTIALS_SECRET, a
#                      Secret Manager secret holding USER:PASSWORD); without
#                      it, 401 (the login is in front); 405 where ingestion
#                      is off.
# A private system (public_access = "none") is called with an ID token of
# the deployer in X-Serverless-Authorization, which Cloud Run checks and
# removes, so that Authorization stays the application's.
# Exit 0 when every check passes; otherwise each failure is printed and the
# exit is 1.
set -euo pipefail

systems=$1
failures=0

fail() {
    echo "::error::$1"
    failures=$((failures + 1))
}

# expect NAME STATUS [curl arguments...]: one request, its status checked;
# the body is left in $body.
body=""
expect() {
    local name=$1 want=$2 got out
    shift 2
    out=$(mktemp)
    got=$(curl -sS -o "$out" -w '%{http_code}' --max-time 20 "${iam[@]}" "$@") || got=000
    body=$(cat "$out")
    rm -f "$out"
    if [ "$got" = "$want" ]; then
        echo "ok: ${name}: ${got}"
    else
        fail "${name}: expected ${want}, got ${got}: ${body:0:300}"
    fi
}

credentials=""
if [ -n "${SMOKE_CREDENTIALS_SECRET:-}" ]; then
    credentials=$(gcloud secrets versions access latest --secret "$SMOKE_CREDENTIALS_SECRET" \
        --project "$GCP_PROJECT")
    echo "::add-mask::${credentials#*:}"
fi

for name in $(jq -r 'keys[]' "$systems"); do
    url=$(jq -r --arg n "$name" '.[$n].api_url' "$systems")
    ingest=$(jq -r --arg n "$name" '.[$n].ingest_enabled' "$systems")
    access=$(jq -r --arg n "$name" '.[$n].public_access' "$systems")
    echo "== ${name}: ${url}"
    iam=()
    if [ "$access" = "none" ]; then
        token=$(gcloud auth print-identity-token --audiences="$url")
        echo "::add-mask::${token}"
        iam=(-H "X-Serverless-Authorization: Bearer ${token}")
    fi

    expect "${name} GET /health" 200 "${url}/health"
    if ! jq -e '.status == "ok"' <<<"$body" >/dev/null 2>&1; then
        fail "${name} GET /health: not {\"status\":\"ok\"}: ${body:0:300}"
    fi
    expect "${name} GET /health?ready" 200 "${url}/health?ready"
    expect "${name} GET /datos" 200 "${url}/datos"
    if ! jq -e 'has("datos")' <<<"$body" >/dev/null 2>&1; then
        fail "${name} GET /datos: no \"datos\" in the answer: ${body:0:300}"
    fi

    record=$(jq -cn --arg r "${RELEASE:-smoke}" --arg t "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        '{id: "datos-smoke", contenido: ("release " + $r), timestamp: $t}')
    if [ "$ingest" != "true" ]; then
        expect "${name} POST /datos (ingestion off)" 405 -X POST \
            -H 'Content-Type: application/json' --data "$record" "${url}/datos"
    elif [ -n "$credentials" ]; then
        expect "${name} POST /datos" 202 -X POST -u "$credentials" \
            -H 'Content-Type: application/json' --data "$record" "${url}/datos"
    else
        expect "${name} POST /datos without credentials" 401 -X POST \
            -H 'Content-Type: application/json' --data "$record" "${url}/datos"
    fi
done

if [ "$failures" -ne 0 ]; then
    echo "smoke test: ${failures} check(s) failed"
    exit 1
fi
echo "smoke test: every check passed"
