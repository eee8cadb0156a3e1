#!/usr/bin/env bash
# The project's test command (README: "Tests"). Installs what the tests need
# on a fresh machine (the nisshi broker, a Python venv with confluent-kafka,
# fastavro and Quix Streams, Prometheus), starts one nisshi broker on a free
# loopback port for the run, checks formatting and clippy (warnings are
# errors), runs every test (unit, integration, doc), and stops the broker,
# also when tests fail.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

# /dev/null must be the null device: cargo gives rustc its standard input
# from it (`rustc -` when it asks the compiler about the target), so a regular
# file there, filled by any `>/dev/null`, reaches the compiler as source.
# Some machines have had a plain file there; make it the device again.
null_device() {
    [ -c /dev/null ] && return 0
    echo "test.sh: /dev/null is not a character device; recreating it" >&2
    rm -f /dev/null && mknod -m 666 /dev/null c 1 3 && return 0
    echo "test.sh: could not recreate /dev/null (needs root and CAP_MKNOD); emptying it instead" >&2
    : >/dev/null
}
null_device

# The habits every commit keeps: formatted, and clippy-clean with warnings
# as errors (the [lints] table in Cargo.toml adds to clippy's defaults).
cargo fmt --all -- --check
# librdkafka is built with TLS (and SCRAM) support: it needs OpenSSL's headers.
if ! pkg-config --exists openssl 2>/dev/null; then
    echo "test.sh: installing libssl-dev and pkg-config (Debian)" >&2
    apt-get update -qq && apt-get install -y -qq libssl-dev pkg-config
fi

# nisshi with in-memory storage (dynostore) and SQLite storage (libsql), which
# the SCRAM tests need for their users. cargo records the features it built.
nisshi_ready() {
    command -v nisshi >/dev/null && python3 - "$HOME/.cargo/.crates2.json" <<'PY'
import json, sys
installs = json.load(open(sys.argv[1]))["installs"]
ok = any(k.startswith("nisshi 0.8.1 ") and {"dynostore", "libsql"} <= set(v["features"])
         for k, v in installs.items())
sys.exit(0 if ok else 1)
PY
}
if ! nisshi_ready 2>/dev/null; then
    echo "test.sh: installing the nisshi broker (about 40 minutes on 2 cores)" >&2
    cargo install nisshi --version 0.8.1 --locked --ignore-rust-version \
        --no-default-features --features dynostore,libsql
fi

venv=target/test-venv
if ! "$venv/bin/python" -c 'import confluent_kafka, fastavro, jsonschema, helm_python, kubernetes_validate, yaml, quixstreams, bytewax' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        'confluent-kafka==2.12.*' 'fastavro==1.12.*' 'jsonschema==4.*' \
        'helm-python-sdk==0.2.*' 'kubernetes-validate==1.37.*' 'pyyaml==6.*' \
        -r benches/quix/requirements.txt -r benches/bytewax/requirements.txt
fi

# Prometheus and promtool from Debian, unpacked (no service is started).
tools="$PWD/target/test-tools"
if [ ! -x "$tools/usr/bin/prometheus" ]; then
    mkdir -p "$tools" && (cd "$tools" && apt-get download prometheus >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get download prometheus; })
    dpkg -x "$tools"/prometheus_*.deb "$tools"
fi

null_device
cargo clippy --locked --all-targets --features nexmark -- -D warnings

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp -t nisshi.XXXXXX.log)
nisshi broker --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://nisshi/ \
    --group-initial-rebalance-delay 0s --silent >"$log" 2>&1 &
broker=$!
trap 'kill "$broker" 2>/dev/null || true; wait "$broker" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    if nisshi topic list --broker "tcp://127.0.0.1:$port" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$broker" 2>/dev/null; then cat "$log" >&2; exit 1; fi
    sleep 0.1
done

export STREAMFOLD_TEST_BROKER="127.0.0.1:$port"
export STREAMFOLD_TEST_PYTHON="$PWD/$venv/bin/python"
export STREAMFOLD_TEST_PROMETHEUS="$tools/usr/bin"
null_device
cargo test --locked --features nexmark
