#!/usr/bin/env bash
# The release image in a real OCI runtime (podman): the Dockerfile's final stage, built around a
# given static binary, checked for what a container runtime does to an entrypoint: stop, kill,
# exit codes, a stop during the gate, a read-only root, no capabilities, a non-root user and the
# runtime's default seccomp profile.
#
#   bash tests/image.sh PATH/TO/STATIC/meshwait
#
# Needs root, podman, runc and a static busybox (Debian: podman runc busybox-static). The test app
# image adds busybox to the release image, since the release image holds only /meshwait.
set -euo pipefail
bin=$(realpath "$1")
here=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$here/Cargo.toml" | head -1)
busybox=$(command -v busybox)

# crun fails on some hosts' rlimit and cgroup setups; runc with cgroupfs runs everywhere root does.
podman=(podman --runtime runc --cgroup-manager cgroupfs)
run=("${podman[@]}" run --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

work=$(mktemp -d)
cleanup() {
  "${podman[@]}" rm -f -t 0 mw-stop mw-kill mw-gate >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# The final stage exactly as the Dockerfile writes it, taking the binary from the build context
# instead of the build stage.
awk '/^FROM scratch/ { final = 1 } final' "$here/Dockerfile" \
  | sed 's#^COPY --from=build /meshwait /meshwait#COPY meshwait /meshwait#' > "$work/Containerfile"
grep -q '^COPY meshwait /meshwait$' "$work/Containerfile" || {
  echo "image.sh: the Dockerfile's final stage no longer copies /meshwait from the build stage" >&2
  exit 1
}
cp "$bin" "$work/meshwait"
"${podman[@]}" build -q -t meshwait:under-test -f "$work/Containerfile" "$work" >/dev/null
mkdir "$work/app"
cp "$busybox" "$work/app/busybox"
printf 'FROM meshwait:under-test\nCOPY busybox /bin/busybox\n' > "$work/app/Containerfile"
"${podman[@]}" build -q -t meshwait-app:under-test -f "$work/app/Containerfile" "$work/app" >/dev/null

failures=0
check() { # NAME EXPECTED ACTUAL
  if [ "$2" = "$3" ]; then
    printf 'ok   %s\n' "$1"
  else
    printf 'FAIL %s: expected %s, got %s\n' "$1" "$2" "$3"
    failures=$((failures + 1))
  fi
}
exit_code() { "$@" >/dev/null 2>&1 && echo 0 || echo $?; }
wait_for_log() { # CONTAINER TEXT
  for _ in $(seq 100); do
    "${podman[@]}" logs "$1" 2>&1 | grep -q "$2" && return 0
    sleep 0.1
  done
  return 1
}

image_size=$("${podman[@]}" image inspect meshwait:under-test --format '{{.Size}}')
printf 'image: %s bytes (binary %s)\n' "$image_size" "$(stat -c %s "$bin")"
check "the image holds the binary and nothing else" yes \
  "$([ $((image_size - $(stat -c %s "$bin"))) -lt 16384 ] && echo yes || echo no)"
check "OCI version label is Cargo.toml's" "$version" \
  "$("${podman[@]}" image inspect meshwait:under-test --format '{{index .Labels "org.opencontainers.image.version"}}')"
check "entrypoint -V" "meshwait $version" "$("${run[@]}" --rm meshwait:under-test -V)"

check "the app's exit code passes through" 7 \
  "$(exit_code "${run[@]}" --rm meshwait-app:under-test --mesh none -- /bin/busybox sh -c 'exit 7')"
check "death by SIGKILL is 137" 137 \
  "$(exit_code "${run[@]}" --rm meshwait-app:under-test --mesh none -- /bin/busybox sh -c 'kill -9 $$')"
check "a missing command is 127" 127 \
  "$(exit_code "${run[@]}" --rm meshwait-app:under-test --mesh none -- /no/such/app)"

# podman stop: SIGTERM to PID 1 (meshwait), which passes it to the app at once (no drain with
# --mesh none); the app's trap exits 0.
"${run[@]}" -d --name mw-stop meshwait-app:under-test --mesh none -- /bin/busybox sh -c \
  'trap "echo app got TERM; exit 0" TERM; echo app up; while :; do sleep 0.1; done' >/dev/null
wait_for_log mw-stop "app up"
started=$(date +%s)
"${podman[@]}" stop -t 20 mw-stop >/dev/null
check "podman stop: the app exits by its own TERM trap" 0 "$("${podman[@]}" wait mw-stop)"
check "podman stop: the app saw SIGTERM" 1 "$("${podman[@]}" logs mw-stop 2>&1 | grep -c 'app got TERM')"
check "podman stop: no SIGKILL needed" yes "$([ $(($(date +%s) - started)) -lt 15 ] && echo yes || echo no)"

# podman kill --signal: any signal reaches the app.
"${run[@]}" -d --name mw-kill meshwait-app:under-test --mesh none -- /bin/busybox sh -c \
  'trap "echo app got USR1" USR1; trap "exit 0" TERM; echo app up; while :; do sleep 0.1; done' >/dev/null
wait_for_log mw-kill "app up"
"${podman[@]}" kill --signal USR1 mw-kill >/dev/null
check "podman kill --signal USR1 reaches the app" 0 "$(wait_for_log mw-kill 'app got USR1' && echo 0 || echo 1)"
"${podman[@]}" stop -t 20 mw-kill >/dev/null
"${podman[@]}" wait mw-kill >/dev/null

# A stop while the gate waits for a proxy that never comes: meshwait is PID 1 and must not be
# the process the kernel protects from unhandled signals; it exits 143 without starting the app.
"${run[@]}" -d --name mw-gate meshwait-app:under-test --timeout 0 -- /bin/busybox echo app started >/dev/null
wait_for_log mw-gate "waiting" || true
started=$(date +%s)
"${podman[@]}" stop -t 20 mw-gate >/dev/null
check "a stop during the gate exits 143" 143 "$("${podman[@]}" wait mw-gate)"
check "a stop during the gate: the app never started" 0 "$("${podman[@]}" logs mw-gate 2>&1 | grep -c 'app started' || true)"
check "a stop during the gate: no SIGKILL needed" yes "$([ $(($(date +%s) - started)) -lt 15 ] && echo yes || echo no)"

# The gate passing in the image: busybox httpd plays the status port.
check "the gate passes once the status port answers 200" "app started" \
  "$("${run[@]}" --rm --entrypoint /bin/busybox meshwait-app:under-test sh -c \
     'mkdir -p /tmp/www/healthz && echo ok > /tmp/www/healthz/ready \
      && httpd -p 127.0.0.1:15020 -h /tmp/www && exec /meshwait --timeout 10s -- /bin/busybox echo app started' 2>/dev/null)"

# Locked down as a restricted pod would be: read-only root, no capabilities, UID 65532, and the
# runtime's default seccomp profile (podman applies it unless told otherwise).
check "read-only root, no capabilities, non-root: exit code" 3 \
  "$(exit_code "${run[@]}" --rm --read-only --cap-drop ALL --user 65532:65532 \
      meshwait-app:under-test --mesh none -- /bin/busybox sh -c 'exit 3')"
check "read-only root, no capabilities, non-root: the app's UID" 65532 \
  "$("${run[@]}" --rm --read-only --cap-drop ALL --user 65532:65532 \
      meshwait-app:under-test --mesh none -- /bin/busybox id -u 2>/dev/null)"
check "the runtime's seccomp filter is in force for these runs" 2 \
  "$("${run[@]}" --rm --read-only --cap-drop ALL --user 65532:65532 --entrypoint /bin/busybox \
      meshwait-app:under-test awk '/^Seccomp:/ { print $2 }' /proc/self/status)"
check "sockets readable under the default seccomp profile, no capabilities" 0 \
  "$(exit_code "${run[@]}" --rm --read-only --cap-drop ALL --user 65532:65532 \
      meshwait:under-test conns --sockets netlink)"
check "install into a volume as non-root" 0 \
  "$(exit_code "${run[@]}" --rm --read-only --cap-drop ALL --user 65532:65532 --tmpfs /shared:mode=1777 \
      meshwait:under-test install /shared)"

if [ "$failures" -gt 0 ]; then
  echo "image checks: $failures failed"
  exit 1
fi
echo "image checks: all passed"
