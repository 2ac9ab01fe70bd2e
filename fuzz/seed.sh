#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ with starting inputs taken from the repository's own test data
# (the corpora themselves are not committed). Safe to re-run: files are named by content.
set -euo pipefail
cd "$(dirname "$0")"
root=..
shared=../../shared/conformance

put() { # put <target> <file-with-content>
  mkdir -p "corpus/$1"
  cp "$2" "corpus/$1/seed-$(sha1sum "$2" | cut -c1-16)"
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# PromQL: one query per file, behind the mode byte the target reads first (0 = instant,
# 1 = range); from the query diff list and the `eval` lines of the upstream test scripts.
{
  grep -v '^#' "$root/crates/meshlens/tests/testdata/promql_diff_queries.txt" || true
  if [ -d "$shared/promql" ]; then
    sed -n 's/^eval\(_fail\|_warn\|_info\|_ordered\)\? \(instant\|range\) at [^ ]*\( to [^ ]* step [^ ]*\)\? //p' "$shared"/promql/*.test
  fi
} | awk 'length > 0' | sort -u | head -2000 | while IFS= read -r q; do
  n=$(( $(printf %s "$q" | cksum | cut -d' ' -f1) % 2 ))
  printf "\\x0$n%s" "$q" > "$tmp/q"
  put promql "$tmp/q"
done

# Istio YAML: the validation fixtures.
find "$root/crates/mesh/tests" -name '*.yaml' | while read -r f; do put istio_yaml "$f"; done

# Prometheus config files: the good and bad fixtures.
for f in "$root"/crates/server/testdata/*.yml; do put prom_config "$f"; done

# Zipkin v2 JSON and OTLP JSON: one small valid body each.
cat > "$tmp/z" <<'JSON'
[{"traceId":"5af7183fb1d4cf5f","parentId":"6b221d5bc9e6496c","id":"352bff9a74ca9ad2","kind":"SERVER","name":"get /api","timestamp":1556604172355737,"duration":1431,"localEndpoint":{"serviceName":"backend","ipv4":"192.168.99.1","port":3306},"remoteEndpoint":{"ipv6":"::1","port":80},"annotations":[{"timestamp":1556604172355737,"value":"ws"}],"tags":{"http.method":"GET","http.path":"/api"},"debug":true,"shared":false}]
JSON
put zipkin_json "$tmp/z"
cat > "$tmp/o" <<'JSON'
{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},"scopeSpans":[{"scope":{"name":"lib","version":"1"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b173","name":"GET /cart","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000","attributes":[{"key":"http.status_code","value":{"intValue":"200"}},{"key":"ok","value":{"boolValue":true}},{"key":"r","value":{"doubleValue":0.5}},{"key":"l","value":{"arrayValue":{"values":[{"stringValue":"a"}]}}},{"key":"m","value":{"kvlistValue":{"values":[{"key":"k","value":{"bytesValue":"AAE="}}]}}}],"events":[{"timeUnixNano":"1544712660500000000","name":"ev","attributes":[]}],"status":{"code":2,"message":"boom"}}]}]}]}
JSON
put otlp_json "$tmp/o"

# gRPC frames: an empty uncompressed Export request, and one flagged as gzip.
printf '\x00\x00\x00\x00\x00\x00' > "$tmp/g"; put grpc_frame "$tmp/g"
printf '\x01\x01\x00\x00\x00\x00' > "$tmp/g"; put grpc_frame "$tmp/g"

# Web config: TLS with client auth, basic auth users, headers.
cat > "$tmp/w" <<'YAML'
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
  min_version: TLS12
  max_version: TLS13
  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
http_server_config:
  http2: true
  headers:
    X-Frame-Options: deny
basic_auth_users:
  alice: $2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi
YAML
put webconfig "$tmp/w"

echo "seeded: $(ls corpus | tr '\n' ' ')"
