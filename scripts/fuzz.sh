#!/usr/bin/env bash
# Runs one fuzz target for a while: scripts/fuzz.sh TARGET SECONDS
#
# Targets (fuzz/fuzz_targets/): decode, inspect, gsm, cdr_body, key_template. cargo-fuzz is
# installed on first use; it runs on the stable toolchain with RUSTC_BOOTSTRAP=1. The corpus
# lives outside the checkout (CALLREC_FUZZ_DIR, default ~/.cache/callrec/fuzz/TARGET) and is
# seeded from the committed fixtures every run; a crash is kept in fuzz/artifacts/TARGET/ and
# the run fails. The last line says: target, seconds, executions, crashes.
set -euo pipefail
if [ $# -ne 2 ] || ! [[ "$2" =~ ^[0-9]+$ ]]; then
    echo "usage: scripts/fuzz.sh TARGET SECONDS   (targets: decode inspect gsm cdr_body key_template)" >&2
    exit 2
fi
target="$1"
seconds="$2"
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -f "$root/fuzz/fuzz_targets/$target.rs" ]; then
    echo "no fuzz target $target (see fuzz/fuzz_targets/)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked >&2
fi
work="${CALLREC_FUZZ_DIR:-$HOME/.cache/callrec/fuzz}"
corpus="$work/corpus/$target"
mkdir -p "$corpus" "$root/fuzz/artifacts/$target"

# Seeds: the fixtures each target reads.
case "$target" in
    decode|inspect)
        cp -n "$root"/fixtures/audio/* "$root"/fixtures/bad/* "$corpus"/ ;;
    gsm)
        # The blocks of the GSM fixtures, from their data chunks.
        for f in "$root"/fixtures/audio/gsm_*.wav; do
            python3 - "$f" "$corpus/$(basename "$f").blocks" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
at = data.find(b"data") + 8
open(sys.argv[2], "wb").write(data[at:at + 65 * 64])
PY
        done ;;
    cdr_body)
        for f in "$root"/fixtures/ocp/*.json "$root"/fixtures/ocp/*.ndjson; do
            [ -f "$f" ] || continue
            { printf '\001'; cat "$f"; } > "$corpus/$(basename "$f").nd"
            { printf '\000'; cat "$f"; } > "$corpus/$(basename "$f").json"
        done
        printf '\000{"type":"start","call_id":"dlg-1","timestamp":"2026-11-24T09:00:25.5Z","group_id":"g","metadata":{"a":"b"}}' > "$corpus/v1-start"
        printf '\000{"events":[{"type":"end","call_id":"dlg-1","timestamp":"2026-11-24T09:01:25Z","duration_ms":60000}]}' > "$corpus/v1-batch"
        printf '\001{"message_type":"dialog_start","id":"dlg-2","time":1764000000000,"flow":{"account_id":"a"}}\n{"message_type":"dialog_end","id":"dlg-2","time":1764000060000,"duration":60000}\n' > "$corpus/native-ndjson" ;;
    key_template)
        printf '{lob}/{yyyy}/{mm}/{dd}/{call_id}.{ext}\ngrp-1\nacct-1' > "$corpus/default"
        printf '{group_id}/{account_id}/{hh}/{call_id}.{ext}\ng\na' > "$corpus/ids"
        printf 'x/{client_id}/{call_id}\n\n' > "$corpus/client" ;;
esac

# Whole decodes under the sanitizer are slow: short inputs for the decoders (the fixtures are
# cut to this, which still covers every header and the first frames), more executions.
case "$target" in
    decode|inspect) max_len=32768 ;;
    gsm) max_len=8320 ;;
    *) max_len=262144 ;;
esac
log="$work/$target.log"
cd "$root/fuzz"
set +e
RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="${CALLREC_FUZZ_TARGET_DIR:-$HOME/.cache/callrec/fuzz-target}" \
    cargo fuzz run "$target" "$corpus" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len="$max_len" \
    -artifact_prefix="$root/fuzz/artifacts/$target/" -print_final_stats=1 >"$log" 2>&1
status=$?
set -e
grep -a -E "^(#[0-9]+ *(INITED|DONE)|Done [0-9]+ runs|SUMMARY|==[0-9]+==)" "$log" || true
execs=$(grep -a -oE "^stat::number_of_executed_units: *[0-9]+" "$log" | grep -oE "[0-9]+$" || echo 0)
crashes=$(find "$root/fuzz/artifacts/$target" -type f | wc -l)
echo "fuzz $target: ${seconds} s, ${execs} executions, ${crashes} crash artifact(s) in fuzz/artifacts/$target"
if [ "$crashes" -ne 0 ] || [ "$status" -ne 0 ]; then
    echo "the run failed (exit $status): see $log" >&2
    exit 1
fi
