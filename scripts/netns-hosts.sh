#!/usr/bin/env bash
# Makes two "hosts" for cohort's multi-host SSH test (crates/cohort/tests/ssh_multihost.rs):
# network namespaces cohort-a (10.77.0.2) and cohort-b (10.77.0.3), each joined by a
# veth pair to the bridge cohort-br (10.77.0.1, in this namespace), each with its own
# host name (a UTS namespace) and its own sshd on port $PORT of its address, using the
# keys of scripts/sshd-test-env.sh. Writes $DIR/netns.env (HOSTS=..., PORT=...).
# Host b's sshd runs in a mount namespace of its own in which $HIDDEN (/tmp/cohort-hidden)
# is an empty tmpfs: what a test puts there exists on this machine and host a but not
# on host b (crates/cohort/tests/ssh_copy.rs: a host that lacks the executable).
#
# Needs root and iproute2; idempotent; prints "skipped: ..." and exits 0 otherwise,
# except under CI (CI set and not false/0, as .ci/run sets it): there it exits 1.
set -euo pipefail
DIR=${COHORT_TEST_SSHD_DIR:-/tmp/cohort-sshd}
skip() {
    case "${CI:-}" in
        "" | false | 0) echo "skipped: $*"; exit 0 ;;
        *) echo "error: $* (CI is set, so the multi-host test must run)" >&2; exit 1 ;;
    esac
}
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! command -v unshare >/dev/null; then
    skip "network-namespace hosts need root, ip and unshare"
fi
bash "$(dirname "$0")/sshd-test-env.sh" >/dev/null
if [ ! -f "$DIR/env" ]; then
    skip "no test sshd"
fi
PORT=$(sed -n 's/^PORT=//p' "$DIR/env")
ME=$(id -un)
SSHD=$(command -v sshd || echo /usr/sbin/sshd)
OPTS=(-o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=no
      -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -i "$DIR/id_ed25519")
answers() { timeout 15 ssh "${OPTS[@]}" -p "$PORT" "$ME@$1" true </dev/null >/dev/null 2>&1; }
HIDDEN=/tmp/cohort-hidden
hides() { timeout 15 ssh "${OPTS[@]}" -p "$PORT" "$ME@$1" "mountpoint -q $HIDDEN" </dev/null >/dev/null 2>&1; }

if ! ip netns add cohort-probe 2>/dev/null; then
    skip "cannot create network namespaces here"
fi
ip netns del cohort-probe

ip link show cohort-br >/dev/null 2>&1 || ip link add cohort-br type bridge
ip addr add 10.77.0.1/24 dev cohort-br 2>/dev/null || true
ip link set cohort-br up
for h in a:2 b:3; do
    name=${h%%:*} n=${h##*:} ns=cohort-${h%%:*} addr=10.77.0.${h##*:}
    ip netns list | grep -qw "$ns" || ip netns add "$ns"
    if ! ip link show "cohort-v$name" >/dev/null 2>&1; then
        ip link add "cohort-v$name" type veth peer name eth0 netns "$ns"
    fi
    ip link set "cohort-v$name" master cohort-br up
    ip -n "$ns" addr add "$addr/24" dev eth0 2>/dev/null || true
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    if answers "$addr"; then
        # Host b must hide $HIDDEN (an sshd started by an older version of this script
        # did not): restart it if it does not.
        if [ "$name" != b ] || hides "$addr"; then
            continue
        fi
        kill "$(cat "$DIR/sshd-$name.pid")" 2>/dev/null || true
        for _ in $(seq 1 50); do answers "$addr" || break; sleep 0.1; done
    fi
    mkdir -p "$HIDDEN"
    unshare_opts=(--uts)
    mount_hidden=""
    if [ "$name" = b ]; then
        unshare_opts=(--uts --mount --propagation private)
        mount_hidden="mount -t tmpfs cohort-hidden $HIDDEN && "
    fi
    sed -e "s/^ListenAddress .*/ListenAddress $addr/" \
        -e "s|^PidFile .*|PidFile $DIR/sshd-$name.pid|" \
        "$DIR/sshd_config" > "$DIR/sshd_config-$name"
    ip netns exec "$ns" unshare "${unshare_opts[@]}" sh -c \
        "${mount_hidden}hostname cohort-host-$name && exec $SSHD -f $DIR/sshd_config-$name -E $DIR/sshd-$name.log"
    for _ in $(seq 1 50); do answers "$addr" && break; sleep 0.2; done
    answers "$addr" || { echo "sshd in $ns does not answer" >&2; cat "$DIR/sshd-$name.log" >&2; exit 1; }
    if [ "$name" = b ] && ! hides "$addr"; then
        echo "host b does not hide $HIDDEN" >&2; exit 1
    fi
done
printf 'HOSTS=10.77.0.2 10.77.0.3\nPORT=%s\n' "$PORT" > "$DIR/netns.env"
echo "network-namespace hosts cohort-a (10.77.0.2) and cohort-b (10.77.0.3) ready"
