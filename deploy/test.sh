#!/usr/bin/env bash
# Proves that the Terraform module, the container image and the binary work together, on this
# machine, against the AWS emulator:
#
#   1. terraform fmt -check, validate (the module, its example, this test's root), checkov;
#   2. moto on a loopback port; the module applied to it (deploy/test/main.tf: a customer KMS
#      key, a self-signed certificate, the emulator's default VPC);
#   3. dockerd (no bridge, no iptables; containers use the host's network); a Debian bookworm
#      base image made locally with debootstrap when there is none (no registry is reachable);
#      the image built from the Dockerfile's `prebuilt` stage with the binary given;
#   4. `callrec init --check` from the image against the table and buckets Terraform created,
#      and their shape compared with a table `callrec init` creates: the two cannot drift;
#   5. `callrec serve` from the image (read-only root, non-root, its volume), configured the way
#      the ECS task is (CALLREC_CONFIG_TOML from Terraform's output), 36 calls over HTTP: each
#      must be stored once in the bucket of its line of business, encrypted with the stack's
#      key, with the buckets' settings in place (deploy/verify.py);
#   6. terraform destroy; everything it started is stopped and removed.
#
# Usage: deploy/test.sh [CALLREC_BINARY]
#   CALLREC_BINARY: a callrec built for this machine (default: the debug build under
#   $CARGO_TARGET_DIR, which `cargo test` has just made). Run by tests/deploy.rs.
# Needs root (it installs Debian's docker.io and debootstrap when missing, and runs dockerd),
# terraform with the hashicorp/aws provider in a local mirror (TF_PLUGIN_DIR, default
# /opt/tf-plugins), Python 3 with venv. Caches under ~/.cache/callrec: the emulator's and
# checkov's virtual environments, dockerd's data, the base image.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${CALLREC_CACHE:-$HOME/.cache/callrec}"
binary="${1:-${CARGO_TARGET_DIR:-$cache/target}/debug/callrec}"
plugins="${TF_PLUGIN_DIR:-/opt/tf-plugins}"
checkov_version="3.2.533"
image="callrec:deploy-test"
token="deploy-test-token-0123456789"
calls=36

export TF_CLI_CONFIG_FILE=/dev/null TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true

say() { echo "deploy-test: $*" >&2; }
fail() {
    say "FAILED: $*"
    exit 1
}
since() { echo "$(($(date +%s) - $1)) s"; }

work="$(mktemp -d /tmp/callrec-deploy.XXXXXX)"
moto_pid="" dockerd_pid="" applied="" container=""
cleanup() {
    local status=$?
    set +e
    if [ -n "$container" ]; then
        if [ "$status" -ne 0 ]; then
            say "the service's last log lines:"
            docker logs --tail 30 "$container" >&2 2>&1
        fi
        docker rm -f "$container" >/dev/null 2>&1
    fi
    if [ -n "$applied" ]; then
        (cd "$work/test" && terraform destroy -auto-approve "${tf_vars[@]}" >"$work/destroy.log" 2>&1) ||
            say "terraform destroy failed (the emulator goes anyway): $work/destroy.log"
    fi
    if [ -n "$dockerd_pid" ]; then
        kill "$dockerd_pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
    fi
    # dockerd leaves its network namespace mounted under its exec root.
    grep -o " $work/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount 2>/dev/null
    [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null && wait "$moto_pid" 2>/dev/null
    if [ "$status" -ne 0 ]; then
        say "kept for a look: $work"
    else
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- What this needs ------------------------------------------------------------------------
started=$(date +%s)
[ -x "$binary" ] || fail "no callrec binary at $binary (cargo build, or give its path)"
command -v terraform >/dev/null || fail "terraform is not installed (it is at /usr/local/bin on these machines)"
[ -d "$plugins/registry.terraform.io/hashicorp/aws" ] ||
    fail "no hashicorp/aws provider in the mirror $plugins (set TF_PLUGIN_DIR)"
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || fail "needs ${missing[*]} (Debian packages) and root to install them"
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >"$work/apt.log" 2>&1 ||
        fail "apt-get install ${missing[*]}: $(tail -3 "$work/apt.log")"
fi
[ "$(id -u)" -eq 0 ] || fail "dockerd needs root"
checkov_venv="$cache/tools/checkov-$checkov_version"
if [ ! -f "$checkov_venv/.installed" ]; then
    say "installing checkov $checkov_version into $checkov_venv"
    rm -rf "$checkov_venv"
    python3 -m venv "$checkov_venv"
    "$checkov_venv/bin/pip" install --quiet --disable-pip-version-check "checkov==$checkov_version" \
        >"$work/pip.log" 2>&1 || fail "pip install checkov: $(tail -3 "$work/pip.log")"
    touch "$checkov_venv/.installed"
fi

# --- 1. Static checks -----------------------------------------------------------------------
# A copy, so that the checkout gets no .terraform folders or lock files.
cp -r "$root/deploy/terraform" "$root/deploy/test" "$work/"
terraform fmt -check -recursive "$root/deploy" >/dev/null ||
    fail "terraform fmt: $(terraform fmt -check -recursive -list=true "$root/deploy" | tr '\n' ' ')"
for dir in terraform terraform/examples/complete test; do
    (cd "$work/$dir" && terraform init -backend=false -plugin-dir="$plugins" >"$work/init.log" 2>&1) ||
        fail "terraform init in deploy/$dir: $(tail -5 "$work/init.log")"
    (cd "$work/$dir" && terraform validate -no-color >"$work/validate.log" 2>&1) ||
        fail "terraform validate in deploy/$dir: $(cat "$work/validate.log")"
done
say "terraform fmt and validate: ok ($(since "$started"))"
"$checkov_venv/bin/checkov" --quiet --compact --framework terraform --directory "$root/deploy/terraform" \
    >"$work/checkov.log" 2>&1 || { cat "$work/checkov.log" >&2; fail "checkov found failed checks in deploy/terraform"; }
"$checkov_venv/bin/checkov" --quiet --compact --framework dockerfile --file "$root/Dockerfile" \
    >>"$work/checkov.log" 2>&1 || { cat "$work/checkov.log" >&2; fail "checkov found failed checks in the Dockerfile"; }
say "checkov: $(grep -o 'Passed checks: [0-9]*, Failed checks: [0-9]*, Skipped checks: [0-9]*' "$work/checkov.log" | paste -sd ';' -) (skips and their reasons: deploy/terraform/README.md)"

# --- 2. The emulator, and the module applied to it ------------------------------------------
python="$("$root/scripts/ensure-moto.sh")"
moto_port=$(free_port)
endpoint="http://127.0.0.1:$moto_port"
"$python" "$root/scripts/moto_serve.py" 127.0.0.1 "$moto_port" >"$work/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 100); do
    curl -fs -o /dev/null "$endpoint/" && break
    kill -0 "$moto_pid" 2>/dev/null || fail "the emulator did not start: $(tail -5 "$work/moto.log")"
    sleep 0.1
done
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=callrec.test -days 2 \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
tf_vars=(-var "endpoint=$endpoint" -var "image=$image"
    -var "certificate_file=$work/cert.pem" -var "private_key_file=$work/key.pem")
applying=$(date +%s)
applied=yes
(cd "$work/test" && terraform apply -auto-approve "${tf_vars[@]}" >"$work/apply.log" 2>&1) ||
    fail "terraform apply: $(grep -A8 'Error' "$work/apply.log" | head -30)"
say "terraform apply: $(grep -o 'Resources: [0-9]* added' "$work/apply.log") in $(since "$applying")"
output() { (cd "$work/test" && terraform output -raw "$1"); }
config_toml="$(output config_toml)"
kms_key_arn="$(output kms_key_arn)"
task_role="$(output task_role_arn)"
task_role="${task_role##*/}"

# --- 3. dockerd, the base image, the image --------------------------------------------------
export DOCKER_HOST="unix://$work/docker.sock"
mkdir -p "$cache/docker"
dockerd --bridge=none --iptables=false --ip6tables=false \
    --data-root "$cache/docker" --exec-root "$work/docker-exec" \
    --pidfile "$work/dockerd.pid" -H "$DOCKER_HOST" >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 150); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || fail "dockerd did not start: $(tail -5 "$work/dockerd.log")"
    sleep 0.2
done
docker info >/dev/null 2>&1 || fail "dockerd did not answer in 30 s"
if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
    base="$cache/images/debian-bookworm-minbase.tar"
    if [ ! -f "$base" ]; then
        say "making a Debian bookworm base image with debootstrap (about a minute)"
        debootstrap --variant=minbase bookworm "$work/rootfs" >"$work/debootstrap.log" 2>&1 ||
            fail "debootstrap: $(tail -5 "$work/debootstrap.log")"
        rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
        mkdir -p "$(dirname "$base")"
        tar -C "$work/rootfs" -cf "$base.part" . && mv "$base.part" "$base"
    fi
    docker import "$base" debian:bookworm-slim >/dev/null
fi
context="$work/image"
mkdir -p "$context/dist"
cp "$root/Dockerfile" "$root/.dockerignore" "$context/"
cp "$binary" "$context/dist/callrec"
strip --strip-all "$context/dist/callrec"
building=$(date +%s)
docker build --network host --target prebuilt -t "$image" "$context" >"$work/build.log" 2>&1 ||
    fail "docker build: $(tail -20 "$work/build.log")"
say "image built in $(since "$building"): $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}') (binary $(stat -c %s "$context/dist/callrec" | awk '{printf "%.0f MB", $1 / 1e6}'))"

# callrec in the image, on the host's network, configured as the ECS task is plus the emulator.
in_image() {
    docker run --network host --read-only \
        -e CALLREC_CONFIG_TOML="$config_toml" \
        -e CALLREC_STATE__ENDPOINT_URL="$endpoint" -e CALLREC_OBJECTS__ENDPOINT_URL="$endpoint" \
        -e CALLREC_OBJECTS__FORCE_PATH_STYLE=true \
        -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_EC2_METADATA_DISABLED \
        "$@"
}

# --- 4. The table Terraform made is the table callrec makes ---------------------------------
in_image --rm "$image" init --check --json >"$work/terraform-table.json" ||
    fail "callrec init --check on what Terraform created: $(cat "$work/terraform-table.json")"
in_image --rm -e CALLREC_STATE__DYNAMODB_TABLE=callrec-by-init "$image" init >/dev/null ||
    fail "callrec init of the reference table"
in_image --rm -e CALLREC_STATE__DYNAMODB_TABLE=callrec-by-init "$image" init --check --json \
    >"$work/init-table.json" || fail "callrec init --check on its own table"
if ! diff <(jq -S .table.shape "$work/terraform-table.json") <(jq -S .table.shape "$work/init-table.json") \
    >"$work/shape.diff"; then
    fail "the table Terraform creates differs from callrec init's: $(cat "$work/shape.diff")"
fi
say "table: Terraform's and callrec init's have the same keys and indexes ($(jq -r '.table.shape.indexes | keys | join(", ")' "$work/terraform-table.json")); $(jq -r '.table | "billing \(.billing_mode), encryption \(.encryption), deletion protection \(.deletion_protection)"' "$work/terraform-table.json")"

# --- 5. callrec serve from the image, and calls through it ----------------------------------
port=$(free_port)
admin_port=$(free_port)
mkdir -p "$work/data"
chown 10001:10001 "$work/data"
container=callrec-deploy-test-$$
in_image -d --name "$container" -v "$work/data:/var/lib/callrec" \
    -e CALLREC_SERVER__LISTEN="127.0.0.1:$port" -e CALLREC_SERVER__ADMIN_LISTEN="127.0.0.1:$admin_port" \
    -e CALLREC_SERVER__BEARER_TOKENS="[\"$token\"]" "$image" >/dev/null
url="http://127.0.0.1:$port"
for _ in $(seq 150); do
    curl -fs -o /dev/null "$url/readyz" && break
    [ "$(docker inspect -f '{{.State.Running}}' "$container")" = true ] || fail "callrec serve exited"
    sleep 0.2
done
curl -fs -o /dev/null "$url/readyz" || fail "callrec serve not ready in 30 s"
[ "$(docker exec "$container" id -u)" = 10001 ] || fail "the service does not run as user 10001"
if docker exec "$container" touch /usr/local/bin/x 2>/dev/null; then
    fail "the root filesystem is writable"
fi
audio="$root/fixtures/audio/ulaw_8k_mono.wav"
sha256=$(sha256sum "$audio" | cut -d' ' -f1)
expected="{}"
for i in $(seq -w 1 "$calls"); do
    call="deploy-$i"
    if [ $((10#$i % 3)) -eq 0 ]; then app="sales-inbound" lob_bucket=ci-callrec-sales; else app="care-main" lob_bucket=ci-callrec-care; fi
    # Half as a recorder would send them, half with curl's default type (not what the bytes are).
    if [ $((10#$i % 2)) -eq 0 ]; then content_type=audio/wav; else content_type=application/x-www-form-urlencoded; fi
    events=$(jq -nc --arg c "$call" --arg a "$app" '{events: [
        {type: "start", call_id: $c, timestamp: "2026-12-01T10:00:00Z", application: $a, group_id: "ci-group"},
        {type: "end", call_id: $c, timestamp: "2026-12-01T10:03:00Z"}]}')
    code=$(curl -s -o "$work/cdr.out" -w '%{http_code}' -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' -d "$events" "$url/v1/cdr")
    [ "$code" = 200 ] || fail "CDR of $call: $code $(cat "$work/cdr.out")"
    code=$(curl -s -o "$work/put.out" -w '%{http_code}' -X PUT -H "Authorization: Bearer $token" \
        -H "x-checksum-sha256: $sha256" -H "Content-Type: $content_type" --data-binary "@$audio" \
        "$url/v1/calls/$call/audio")
    [ "$code" = 201 ] || fail "upload of $call: $code $(cat "$work/put.out")"
    expected=$(jq -c --arg c "$call" --arg b "$lob_bucket" '.[$c] = $b' <<<"$expected")
done
waiting=$(date +%s)
for call in $(jq -r 'keys[]' <<<"$expected"); do
    while :; do
        state=$(curl -fs -H "Authorization: Bearer $token" "$url/v1/calls/$call" |
            jq -r 'if .flags.stored then "stored" else "\(.status), last error: \(.last_error)" end')
        [ "$state" = stored ] && break
        [ $(($(date +%s) - waiting)) -lt 180 ] || fail "$call is $state after 180 s"
        sleep 0.5
    done
done
say "$calls calls stored through the image in $(since "$waiting")"
"$python" "$root/deploy/verify.py" "$endpoint" "$kms_key_arn" "$(jq -c \
    --argjson calls "$expected" --arg role "$task_role" \
    '{calls: $calls, staging: "ci-callrec-staging", staging_prefix: "staging", staging_expiry_days: 7, transition: [30, "STANDARD_IA"], task_role: $role}' <<<'{}')" ||
    fail "what callrec stored is not what the stack promises"
metrics=$(curl -fs "http://127.0.0.1:$admin_port/metrics")
grep -q "^callrec_calls{state=\"stored\"} $calls\$" <<<"$metrics" ||
    fail "the funnel does not say $calls stored: $(grep '^callrec_calls{' <<<"$metrics" | tr '\n' ' ')"
docker stop -t 30 "$container" >/dev/null
[ "$(docker inspect -f '{{.State.ExitCode}}' "$container")" = 0 ] || fail "callrec serve did not exit 0 on SIGTERM"

# --- 6. Destroy -----------------------------------------------------------------------------
destroying=$(date +%s)
(cd "$work/test" && terraform destroy -auto-approve "${tf_vars[@]}" >"$work/destroy.log" 2>&1) ||
    fail "terraform destroy: $(grep -A8 'Error' "$work/destroy.log" | head -30)"
applied=""
say "terraform destroy: $(grep -o 'Resources: [0-9]* destroyed' "$work/destroy.log") in $(since "$destroying")"
say "ok in $(since "$started")"
