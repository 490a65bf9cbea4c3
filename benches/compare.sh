#!/usr/bin/env bash
# Times `callrec process` against sox and ffmpeg doing the same job (trim leading/trailing
# silence, normalize) on the same call, as whole processes, and prints medians and ratios.
#
#   benches/compare.sh                 # a 60-minute 8 kHz mono PCM16 call, 5 runs (3 for ffmpeg)
#   MINUTES=5 RUNS=9 benches/compare.sh
#
# Installs ffmpeg and sox from Debian's packages when missing (needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES="${MINUTES:-60}"
RUNS="${RUNS:-5}"
FFMPEG_RUNS="${FFMPEG_RUNS:-3}"
WORK="${WORK:-$(mktemp -d)}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/callrec/target}"

need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v sox >/dev/null || need+=(sox)
command -v bc >/dev/null || need+=(bc)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]} from Debian's packages" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build --release -q --bin callrec -p callrec
cargo build --release -q --bin gen-fixtures -p callrec-fixtures
CALLREC="$CARGO_TARGET_DIR/release/callrec"
CALL="$WORK/call.wav"
"$CARGO_TARGET_DIR/release/gen-fixtures" --long "$CALL" --minutes "$MINUTES" >/dev/null

# Median wall time (s) of a command over N runs.
median() {
    local n="$1"; shift
    local times=()
    for _ in $(seq "$n"); do
        local start end
        start=$(date +%s.%N)
        "$@" >/dev/null 2>&1
        end=$(date +%s.%N)
        times+=("$(echo "$end - $start" | bc -l)")
    done
    printf '%s\n' "${times[@]}" | sort -g | awk '{ a[NR] = $1 } END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.4f\n", m }'
}

seconds=$(echo "$MINUTES * 60" | bc -l)
echo "input: $MINUTES-minute 8 kHz mono PCM16 call ($(stat -c %s "$CALL") bytes); medians of $RUNS runs ($FFMPEG_RUNS for ffmpeg)"
t_callrec=$(median "$RUNS" "$CALLREC" process "$CALL" -o "$WORK/callrec" --trim --target -23LUFS --threads 1)
t_sox=$(median "$RUNS" sox "$CALL" "$WORK/sox.wav" silence 1 0.1 0.3% reverse silence 1 0.1 0.3% reverse norm -1)
t_ffmpeg=$(median "$FFMPEG_RUNS" ffmpeg -y -nostdin -threads 1 -i "$CALL" \
    -af "silenceremove=start_periods=1:start_threshold=-50dB,areverse,silenceremove=start_periods=1:start_threshold=-50dB,areverse,loudnorm=I=-23:TP=-1" \
    -ar 8000 "$WORK/ffmpeg.wav")
# Each tool must have kept the call: a trim that cuts at the first pause (ffmpeg's
# silenceremove with stop_periods=1 does) would make it look fast for doing nothing.
for out in "$WORK/callrec/call.wav" "$WORK/sox.wav" "$WORK/ffmpeg.wav"; do
    kept=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$out")
    if [ "$(echo "$kept < $seconds * 0.95" | bc -l)" -eq 1 ]; then
        echo "error: $out holds $kept s of the $seconds s call: that tool did not do the same job" >&2
        exit 1
    fi
done
printf '%-44s %10s %14s %10s\n' "tool" "median s" "x real time" "callrec is"
row() { printf '%-44s %10.4f %14.0f %9.1fx\n' "$1" "$2" "$(echo "$seconds / $2" | bc -l)" "$(echo "$2 / $t_callrec" | bc -l)"; }
row "callrec process --trim --target -23LUFS" "$t_callrec"
row "sox silence ... reverse ... norm -1" "$t_sox"
row "ffmpeg -af silenceremove,areverse,...,loudnorm" "$t_ffmpeg"
echo "(the last column: how many times faster callrec is than that tool)"
