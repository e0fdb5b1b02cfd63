#!/usr/bin/env bash
# The read-only window of `wharf backup create` against the amount of blob data: a release build
# of Wharf is filled with 100 blobs (10 images of 10 layers) of the given total size, then backed
# up; the window, the drain and the copy time are recorded in bench/results/backup-window.md.
#
#   bench/backup_window.sh [TOTAL_MIB ...]      default: 100 5120
#
# Needs: curl, python3, sha256sum (and the disk space: twice the largest size).
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-100}")
[[ $# -eq 0 ]] && sizes=(100 5120)

cargo build --release --quiet -p wharf
wharf=$PWD/target/release/wharf
work=$(mktemp -d)
server=
cleanup() { [[ -n $server ]] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

rows=()
for total in "${sizes[@]}"; do
  data=$work/data-$total
  port=$(free_port)
  url=http://127.0.0.1:$port
  "$wharf" serve --listen 127.0.0.1:$port --data-dir "$data" 2>"$work/server-$total.log" &
  server=$!
  for _ in $(seq 100); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.1; done

  layer_kib=$(( total * 1024 / 100 ))
  echo "filling with 100 blobs of $layer_kib KiB ($total MiB)..." >&2
  for image in $(seq 0 9); do
    config="{\"image\":$image,\"total\":$total}"
    layers=()
    for layer in $(seq 0 9); do
      file=$work/layer
      head -c "${layer_kib}K" /dev/urandom >"$file"
      digest=sha256:$(sha256sum "$file" | cut -d' ' -f1)
      curl -sf -X POST --data-binary @"$file" -H 'Content-Type: application/octet-stream' \
        "$url/v2/bench/app$image/blobs/uploads/?digest=$digest" >/dev/null
      layers+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"$digest\",\"size\":$(stat -c%s "$file")}")
    done
    config_digest=sha256:$(printf '%s' "$config" | sha256sum | cut -d' ' -f1)
    printf '%s' "$config" | curl -sf -X POST --data-binary @- "$url/v2/bench/app$image/blobs/uploads/?digest=$config_digest" >/dev/null
    manifest="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"$config_digest\",\"size\":${#config}},\"layers\":[$(IFS=,; echo "${layers[*]}")]}"
    printf '%s' "$manifest" | curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
      --data-binary @- "$url/v2/bench/app$image/manifests/v1" >/dev/null
  done
  rm -f "$work/layer"

  echo "backing up..." >&2
  started=$(date +%s.%N)
  "$wharf" backup create --to "$work/backup-$total" --url "$url" --json >"$work/backup-$total.json" 2>/dev/null
  ended=$(date +%s.%N)
  rows+=("$(python3 - "$work/backup-$total.json" "$total" "$started" "$ended" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
total, started, ended = sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
gib = m["counts"]["bytes"] / 2**30
print(f"| {total} MiB | {m['counts']['blobs']} | {m['counts']['manifests']} | "
      f"{m['read_only']['read_only_ms']} ms | {m['read_only']['drain_ms']} ms | {ended - started:.1f} s |")
PY
)")
  kill "$server"; wait "$server" 2>/dev/null || true; server=
  rm -rf "$data" "$work/backup-$total"
done

{
  echo "# Backup read-only window against blob volume"
  echo
  echo "Produced by \`bench/backup_window.sh\` on $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m),"
  echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), Wharf $("$wharf" --version | cut -d' ' -f2) (release build)."
  echo "Each registry holds 10 images of 10 layers; the backup runs over the admin API."
  echo
  echo "| Blob data | Blobs | Manifests | Read-only window | Drain before it | Whole backup |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} >bench/results/backup-window.md
cat bench/results/backup-window.md
