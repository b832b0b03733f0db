#!/usr/bin/env bash
# The container cluster test: builds the image without pulling anything, starts the
# docker-compose cluster, and checks key generation, signing (verified by OpenSSL on the host),
# two killed nodes, a third cut off the network, its return, a full restart with the keys kept,
# a node whose volume is wiped and repaired, and a sixth container that joins the running
# cluster (the others reload their configs on SIGHUP), is enrolled and signs. Everything it
# creates is removed at exit, pass or fail.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! docker info >/dev/null 2>&1; then
  echo "!!! SKIPPED: no Docker engine answers here; the container cluster test did NOT run !!!"
  exit 0
fi
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
else
  echo "!!! SKIPPED: neither 'docker compose' nor 'docker-compose' is installed !!!"
  exit 0
fi

PROJECT="frostnodetest$$"
# The containers read the identities in config/ through their group; a node accepts a
# group-readable identity only from a file owned by root (git checks them out 0644, which
# every node refuses).
if [ "$(id -u)" -ne 0 ]; then
  echo "!!! SKIPPED: the container cluster test hands the nodes root-owned identities: run it as root !!!"
  exit 0
fi
export FROSTNODE_GID="$(id -g)"
chmod 0640 config/node*/identity.key   # as cluster-config --docker writes them
export FROSTNODE_IMAGE="frostnode:test-$$"
WORK="$(mktemp -d)"
# The nodes read their configs from copies in $WORK (edited in place and reloaded when the
# sixth node joins); node6 is defined there too, under a profile, started only when asked.
export WORK
OVERRIDE="$WORK/override.yml"
dc() { "${COMPOSE[@]}" -p "$PROJECT" -f docker-compose.yml -f "$OVERRIDE" "$@"; }
dc6() { dc --profile join "$@"; }
cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then
    echo "--- docker test failed; last node logs:"
    dc6 logs --tail 30 2>/dev/null || true
  fi
  dc6 down -v --remove-orphans >/dev/null 2>&1 || true
  docker rmi -f "$FROSTNODE_IMAGE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT

mkdir -p "$WORK/conf"
cp config/node?.toml "$WORK/conf/"
python3 - "$OVERRIDE" <<'PY'
import sys
nodes = "".join(
    f"  node{k}:\n    volumes:\n      - ${{WORK}}/conf/node{k}.toml:/etc/frostnode/node.toml:ro\n"
    for k in range(1, 6)
)
node6 = """  node6:
    image: ${FROSTNODE_IMAGE}
    profiles: ["join"]
    hostname: node6
    environment:
      RUST_LOG: info
      FROSTNODE_PASSPHRASE: local-test-passphrase-change-me
    group_add:
      - "${FROSTNODE_GID}"
    ports:
      - "127.0.0.1:${NODE6_API_PORT}:8080"
    volumes:
      - ${WORK}/conf/node6.toml:/etc/frostnode/node.toml:ro
      - ${WORK}/node6/identity.key:/etc/frostnode/identity.key:ro
      - node6-data:/data
volumes:
  node6-data:
"""
open(sys.argv[1], "w").write("services:\n" + nodes + node6)
PY

# Free host ports for the six APIs.
read -r -a PORTS <<<"$(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
)"
for k in 1 2 3 4 5 6; do export "NODE${k}_API_PORT=${PORTS[$((k - 1))]}"; done
api() { echo "http://127.0.0.1:${PORTS[$(($1 - 1))]}"; }

step() { echo "== docker: $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
json() { python3 -c "import json,sys; v=json.load(sys.stdin); print($1)"; }

# wait_for DESCRIPTION SECONDS COMMAND...: retries COMMAND until it succeeds.
wait_for() {
  local what=$1 limit=$2
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "timed out waiting for $what"
    sleep 0.5
  done
}
ready_peers_are() { # NODE EXPECTED (python list literal)
  curl -sf "$(api "$1")/v1/status" | json "sorted(v['ready_peers']) == $2" | grep -qx True
}

step "static binary"
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked --target x86_64-unknown-linux-gnu
BIN=target/x86_64-unknown-linux-gnu/release/frostnode
# The client every node of the compose cluster serves (config/client.key, client "admin").
export FROSTNODE_CLIENT_KEY=config/client.key
bearer() { echo "Authorization: Bearer $("$BIN" token "$@")"; }

step "image (no pull: --target prebuilt)"
docker build -q --target prebuilt -t "$FROSTNODE_IMAGE" . >/dev/null

step "cluster up"
dc up -d --no-build
for k in 1 2 3 4 5; do
  wait_for "node $k health" 120 curl -sf "$(api "$k")/v1/health"
done
for k in 1 2 3 4 5; do
  others=$(python3 -c "print([i for i in range(1, 6) if i != $k])")
  wait_for "node $k sees every peer" 120 ready_peers_are "$k" "$others"
done

# (Read whole before searching: with pipefail, `grep -q` leaving early would fail the pipe.)
node1_log=$(dc logs node1 2>&1)
grep -q "encrypted at rest" <<<"$node1_log" || fail "node 1's key store is not encrypted"

step "no client token: 401"
code=$(curl -s -o "$WORK/err.json" -w '%{http_code}' -X POST "$(api 1)/v1/keys" \
  -H 'content-type: application/json' -d '{"key_id": "ci", "threshold": 3}')
[ "$code" = 401 ] || fail "expected 401 without a token, got $code: $(cat "$WORK/err.json")"

step "keygen (3 of 5)"
KEY=$(curl -sf -X POST "$(api 1)/v1/keys" -H 'content-type: application/json' \
  -H "$(bearer --act keygen --key-id ci --threshold 3)" \
  -d '{"key_id": "ci", "threshold": 3}')
GPK=$(echo "$KEY" | json "v['group_public_key']")
for k in 2 3 4 5; do
  got=$(curl -sf "$(api "$k")/v1/keys/ci" | json "v['group_public_key']")
  [ "$got" = "$GPK" ] || fail "node $k has group key $got, node 1 $GPK"
done

# sign_and_verify NODE TEXT: signs TEXT through NODE and checks it with OpenSSL on the host.
sign_and_verify() {
  local node=$1 text=$2 msg_hex body sig
  msg_hex=$(printf '%s' "$text" | python3 -c "import sys; print(sys.stdin.buffer.read().hex())")
  body=$(curl -sf -X POST "$(api "$node")/v1/keys/ci/sign" -H 'content-type: application/json' \
    -H "$(bearer --act sign --key-id ci --message "$msg_hex")" \
    -d "{\"message\": \"$msg_hex\"}") || fail "signing through node $node failed"
  sig=$(echo "$body" | json "v['signature']")
  python3 - "$WORK" "$GPK" "$sig" "$text" <<'PY'
import sys, pathlib
work, gpk, sig, text = sys.argv[1:]
d = pathlib.Path(work)
(d / "pk.der").write_bytes(bytes.fromhex("302a300506032b6570032100" + gpk))
(d / "sig.bin").write_bytes(bytes.fromhex(sig))
(d / "msg.bin").write_bytes(text.encode())
PY
  openssl pkeyutl -verify -pubin -keyform DER -inkey "$WORK/pk.der" -rawin \
    -in "$WORK/msg.bin" -sigfile "$WORK/sig.bin" >/dev/null \
    || fail "OpenSSL rejects the signature from node $node"
  echo "   signed via node $node, coordinator $(echo "$body" | json "v['coordinator']"), \
signers $(echo "$body" | json "v['signers']"): OpenSSL OK"
}

step "sign, verify with OpenSSL"
sign_and_verify 1 "hello from the container cluster"
sign_and_verify 4 "and through another node"

step "docker kill node4 node5: 3 of 5 still sign"
docker kill "$(dc ps -q node4)" "$(dc ps -q node5)" >/dev/null
wait_for "node 1 to see node 4 and 5 gone" 60 ready_peers_are 1 "[2, 3]"
sign_and_verify 1 "two nodes down"
sign_and_verify 2 "two nodes down, via node 2"

step "docker network disconnect node3: 503"
NET="${PROJECT}_default"
NODE3=$(dc ps -q node3)
docker network disconnect "$NET" "$NODE3"
wait_for "node 1 to see node 3 gone" 90 ready_peers_are 1 "[2]"
code=$(curl -s -o "$WORK/err.json" -w '%{http_code}' -X POST "$(api 1)/v1/keys/ci/sign" \
  -H "$(bearer --act sign --key-id ci --message 00)" \
  -H 'content-type: application/json' -d '{"message": "00"}')
[ "$code" = 503 ] || fail "expected 503, got $code: $(cat "$WORK/err.json")"
grep -q "only 2 of 5 participants reachable; 3 are needed" "$WORK/err.json" \
  || fail "unclear 503: $(cat "$WORK/err.json")"
echo "   503: $(json "v['error']" <"$WORK/err.json")"

step "docker network connect node3: signing works again"
docker network connect "$NET" "$NODE3"
wait_for "node 1 to see node 3 back" 90 ready_peers_are 1 "[2, 3]"
sign_and_verify 1 "node 3 is back"

step "docker compose restart: keys persist"
dc restart >/dev/null
for k in 1 2 3 4 5; do
  wait_for "node $k health after restart" 120 curl -sf "$(api "$k")/v1/health"
done
wait_for "node 1 sees every peer after restart" 120 ready_peers_are 1 "[2, 3, 4, 5]"
for k in 1 2 3 4 5; do
  got=$(curl -sf "$(api "$k")/v1/keys/ci" | json "v['group_public_key']")
  [ "$got" = "$GPK" ] || fail "node $k lost its key over the restart"
done
sign_and_verify 5 "after a restart"

step "metrics"
curl -sf "$(api 5)/metrics" >"$WORK/metrics.txt" || fail "no /metrics"
grep -q 'frostnode_sign_requests_total{outcome="succeeded",reason=""} 1' "$WORK/metrics.txt" \
  || fail "signing metrics missing: $(grep frostnode_sign "$WORK/metrics.txt")"

step "node 3's volume wiped: it starts empty and is repaired"
dc stop node3 >/dev/null
dc rm -f node3 >/dev/null
docker volume rm "${PROJECT}_node3-data" >/dev/null
dc up -d --no-build node3 >/dev/null 2>&1
wait_for "node 3 health after the wipe" 120 curl -sf "$(api 3)/v1/health"
wait_for "node 3 sees every peer" 120 ready_peers_are 3 "[1, 2, 4, 5]"
wait_for "node 1 sees node 3 again" 120 ready_peers_are 1 "[2, 3, 4, 5]"
code=$(curl -s -o /dev/null -w '%{http_code}' "$(api 3)/v1/keys/ci")
[ "$code" = 404 ] || fail "node 3 should hold no key after the wipe, got $code"
curl -sf -X POST "$(api 1)/v1/keys/ci/repair" -H 'content-type: application/json' \
  -H "$(bearer --act repair --key-id ci --node 3)" -d '{"node": 3}' >"$WORK/repair.json" \
  || fail "repair of node 3 failed: $(cat "$WORK/repair.json")"
[ "$(json "v['epoch']" <"$WORK/repair.json")" = 1 ] || fail "repair: $(cat "$WORK/repair.json")"
got=$(curl -sf "$(api 3)/v1/keys/ci" | json "v['group_public_key']")
[ "$got" = "$GPK" ] || fail "node 3 holds group key $got after its repair, not $GPK"
docker kill "$(dc ps -q node4)" "$(dc ps -q node5)" >/dev/null
wait_for "node 1 to see node 4 and 5 gone" 60 ready_peers_are 1 "[2, 3]"
sign_and_verify 3 "node 3 repaired, signing with 1 and 2"
dc start node4 node5 >/dev/null
wait_for "node 1 sees every peer" 120 ready_peers_are 1 "[2, 3, 4, 5]"

step "a sixth container joins the running cluster"
NODE6_ID=$("$BIN" init --data-dir "$WORK/node6")
chmod 0640 "$WORK/node6/identity.key"
python3 - "$WORK/conf" "$NODE6_ID" <<'PY'
import re, sys, pathlib
conf, peer_id = pathlib.Path(sys.argv[1]), sys.argv[2]
entry = lambda k, pid: f'\n[[peers]]\nid = {k}\npeer_id = "{pid}"\naddr = "/dns4/node{k}/tcp/7000"\n'
five = re.search(r'id = 5\npeer_id = "([^"]+)"', (conf / "node1.toml").read_text()).group(1)
six = (conf / "node5.toml").read_text().replace("id = 5\n", "id = 6\n", 1) + entry(5, five)
(conf / "node6.toml").write_text(six)
for k in range(1, 6):
    path = conf / f"node{k}.toml"
    with open(path, "a") as f:  # appended in place: the file mounted in the container
        f.write(entry(6, peer_id))
PY
for k in 1 2 3 4 5; do
  docker kill -s HUP "$(dc ps -q "node$k")" >/dev/null
done
dc6 up -d --no-build node6 >/dev/null 2>&1
wait_for "node 6 health" 120 curl -sf "$(api 6)/v1/health"
for k in 1 2 3 4 5; do
  others=$(python3 -c "print([i for i in range(1, 7) if i != $k])")
  wait_for "node $k sees node 6 (reloaded on SIGHUP)" 120 ready_peers_are "$k" "$others"
done
curl -sf -X POST "$(api 2)/v1/keys/ci/enrol" -H 'content-type: application/json' \
  -H "$(bearer --act enrol --key-id ci --node 6)" -d '{"node": 6}' >"$WORK/enrol.json" \
  || fail "enrolment of node 6 failed: $(cat "$WORK/enrol.json")"
[ "$(json "v['participants']" <"$WORK/enrol.json")" = "[1, 2, 3, 4, 5, 6]" ] \
  || fail "enrolment: $(cat "$WORK/enrol.json")"
got=$(curl -sf "$(api 6)/v1/keys/ci" | json "v['group_public_key']")
[ "$got" = "$GPK" ] || fail "node 6 holds group key $got, not $GPK"
docker kill "$(dc ps -q node3)" "$(dc ps -q node4)" "$(dc ps -q node5)" >/dev/null
wait_for "node 6 to see 3, 4 and 5 gone" 60 ready_peers_are 6 "[1, 2]"
sign_and_verify 6 "node 6 signs with two old nodes"

echo "docker: 1 passed, 0 failed"
