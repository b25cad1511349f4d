#!/usr/bin/env bash
# Starts a private OpenSSH server for cohort's SSH tests (crates/cohort/tests/ssh.rs).
#
#   scripts/sshd-test-env.sh [--no-install]
#
# - Installs openssh-server with apt-get when sshd is missing, we are root and
#   --no-install was not given (CI: a fresh Debian 12 machine).
# - Generates a host key, a client key (authorized) and a second client key (not
#   authorized, for the wrong-key test) in $COHORT_TEST_SSHD_DIR (default
#   /tmp/cohort-sshd), writes sshd_config there and starts sshd on
#   127.0.0.1:$COHORT_TEST_SSHD_PORT (default 22022) for the current user.
# - Writes $DIR/env (PORT=, USER=, KEY=, WRONG_KEY=) once the server accepts the key.
#
# Idempotent: if the server from an earlier run still answers, it is kept. Exits 0 and
# prints "skipped: ..." when sshd cannot be had (the tests then skip as well), except
# under CI (CI set and not false/0, as .ci/run sets it): there it exits 1.
set -euo pipefail

skip() {
    case "${CI:-}" in
        "" | false | 0) echo "skipped: $*"; exit 0 ;;
        *) echo "error: $* (CI is set, so the SSH tests must run)" >&2; exit 1 ;;
    esac
}

DIR=${COHORT_TEST_SSHD_DIR:-/tmp/cohort-sshd}
PORT=${COHORT_TEST_SSHD_PORT:-22022}
INSTALL=1
[ "${1:-}" = "--no-install" ] && INSTALL=0

SSH_OPTS=(-o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=no
          -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR)
ME=$(id -un)

answers() {
    timeout 15 ssh "${SSH_OPTS[@]}" -i "$DIR/id_ed25519" -p "$PORT" "$ME@127.0.0.1" true \
        </dev/null >/dev/null 2>&1
}

find_sshd() {
    command -v sshd 2>/dev/null || { [ -x /usr/sbin/sshd ] && echo /usr/sbin/sshd; } || true
}

SSHD=$(find_sshd)
if [ -z "$SSHD" ] || ! command -v ssh >/dev/null 2>&1; then
    if [ "$INSTALL" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq openssh-server openssh-client >/dev/null
        SSHD=$(find_sshd)
    fi
fi
if [ -z "$SSHD" ]; then
    skip "no sshd (install openssh-server, or run as root to let this script do it)"
fi

if [ -f "$DIR/env" ] && [ -f "$DIR/sshd.pid" ] && kill -0 "$(cat "$DIR/sshd.pid")" 2>/dev/null \
    && answers; then
    echo "sshd for tests already running on 127.0.0.1:$PORT ($DIR)"
    exit 0
fi

mkdir -p "$DIR"
chmod 700 "$DIR"
rm -f "$DIR/env"
for k in host_ed25519 id_ed25519 wrong_ed25519; do
    [ -f "$DIR/$k" ] || ssh-keygen -q -t ed25519 -N '' -C "cohort-test-$k" -f "$DIR/$k"
done
cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys"
chmod 600 "$DIR/authorized_keys"

cat > "$DIR/sshd_config" <<CONF
Port $PORT
ListenAddress 127.0.0.1
HostKey $DIR/host_ed25519
PidFile $DIR/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
MaxSessions 200
MaxStartups 200
LoginGraceTime 20
LogLevel ERROR
Subsystem sftp internal-sftp
CONF

# sshd refuses to start without its privilege-separation directory.
[ "$(id -u)" = 0 ] && mkdir -p /run/sshd && chmod 755 /run/sshd

if [ -f "$DIR/sshd.pid" ]; then
    kill "$(cat "$DIR/sshd.pid")" 2>/dev/null || true
    sleep 0.2
fi
"$SSHD" -f "$DIR/sshd_config" -E "$DIR/sshd.log"

for _ in $(seq 1 50); do
    if answers; then
        cat > "$DIR/env" <<ENV
PORT=$PORT
USER=$ME
KEY=$DIR/id_ed25519
WRONG_KEY=$DIR/wrong_ed25519
ENV
        echo "sshd for tests listening on 127.0.0.1:$PORT ($DIR)"
        exit 0
    fi
    sleep 0.2
done
echo "sshd did not accept the test key; log:" >&2
cat "$DIR/sshd.log" >&2 || true
exit 1
