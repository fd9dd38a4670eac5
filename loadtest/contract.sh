#!/usr/bin/env bash
# The API contract for a release (issue #44): scripts/contract's run, longer - more examples an
# operation and a random seed (printed, so a failure can be replayed with CONTRACT_SEED=it),
# against a real instance on both listeners. CI runs the short form (scripts/test).
#
# Usage: loadtest/contract.sh            (CONTRACT_EXAMPLES=100, a random seed)
#        CONTRACT_EXAMPLES=N CONTRACT_SEED=S loadtest/contract.sh
#        FLASHGATE_BIN=path              (default target/debug/flashgate; built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
export FLASHGATE_BIN=${FLASHGATE_BIN:-$PWD/target/debug/flashgate}
[ -x "$FLASHGATE_BIN" ] || cargo build -q
export CONTRACT_EXAMPLES=${CONTRACT_EXAMPLES:-100}
export CONTRACT_SEED=${CONTRACT_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
echo "[contract] release run: $CONTRACT_EXAMPLES examples an operation, seed $CONTRACT_SEED" >&2
exec ./scripts/contract
