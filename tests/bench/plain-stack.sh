#!/usr/bin/env bash
# The yardstick for the fresh-converge benchmark (tests/bench/run.py): the
# installs site.yml does for inventories/local, written as one plain script
# the way a careful operator would, run inside a fresh box. It checks
# nothing twice, validates nothing and is not idempotent; it only shows how
# fast the same work can go. Its inputs are staged beside it in /root/bench
# by run.py; versions and ports come from the environment run.py sets.
set -euo pipefail
cd /root/bench
# Marks where each step starts, for run.py's "where the time goes".
phase() { echo "phase $1 $EPOCHREALTIME"; }
: "${LETTA_VERSION:?}" "${LIVEKIT_VERSION:?}" "${PG_PORT:?}" "${LETTA_PORT:?}" "${LIVEKIT_PORT:?}" "${LIVEKIT_UDP_PORT:?}"
export DEBIAN_FRONTEND=noninteractive
PG_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
export UV_CACHE_DIR=/var/cache/python-venv/uv SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
       UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1 UV_LINK_MODE=copy

phase packages
apt-get update -qq
apt-get install -y -qq postgresql-17 postgresql-17-pgvector python3-psycopg2 acl pgbackrest \
  gcc python3-dev libpq-dev python3-pip python3-venv python3-packaging >/dev/null

phase postgresql
sed -i "s/^#\?port = .*/port = $PG_PORT/; s/^#\?listen_addresses = .*/listen_addresses = '127.0.0.1'/" \
  /etc/postgresql/17/main/postgresql.conf
printf "archive_mode = on\narchive_command = 'pgbackrest --stanza=letta archive-push %%p'\n" \
  >/etc/postgresql/17/main/conf.d/60-pgbackrest-archive.conf
install -d -o postgres -g postgres -m 0750 /etc/pgbackrest
(umask 027; printf '[global]\nrepo1-path=/var/lib/pgbackrest\nrepo1-retention-full=2\nstart-fast=y\n[letta]\npg1-path=/var/lib/postgresql/17/main\npg1-port=%s\n' \
  "$PG_PORT" >/etc/pgbackrest/pgbackrest.conf)
chown postgres:postgres /etc/pgbackrest/pgbackrest.conf
systemctl restart postgresql@17-main
su postgres -c "psql -q -p $PG_PORT" <<SQL
CREATE ROLE letta LOGIN PASSWORD '$PG_PASSWORD';
CREATE DATABASE letta OWNER letta;
\c letta
CREATE EXTENSION vector;
SQL
runuser -u postgres -- pgbackrest --stanza=letta stanza-create

phase letta-venv
python3 -m venv /opt/python-venv-tools
hashes=$(sed -n '/^_python_venv_uv_wheel_sha256:/,/^[^ ]/s/^ *- \([0-9a-f]\{64\}\)$/ --hash=sha256:\1/p' vars-python_venv.yml | tr -d '\n')
echo "uv==0.13.8$hashes" >/opt/python-venv-tools/uv-requirement.txt
/opt/python-venv-tools/bin/python -m pip install -q --disable-pip-version-check --require-hashes \
  --only-binary :all: -r /opt/python-venv-tools/uv-requirement.txt
uv=/opt/python-venv-tools/bin/uv

useradd --system --home-dir /var/lib/letta --create-home --shell /usr/sbin/nologin letta
mkdir -p "/opt/letta/$LETTA_VERSION" /opt/letta/src
$uv venv -q --python /usr/bin/python3 "/opt/letta/$LETTA_VERSION/venv"
ln -sfn "/opt/letta/$LETTA_VERSION" /opt/letta/current
$uv pip sync -q --python /opt/letta/current/venv/bin/python --require-hashes "locks/letta-$LETTA_VERSION.txt"
message_py=$(echo /opt/letta/current/venv/lib/python3*/site-packages/letta/orm/message.py)
sed -i 's/INSERT OR IGNORE INTO message_sequence (id, next_val) SELECT 1, COALESCE(MAX(sequence_id), 0) + 1 FROM messages/INSERT INTO message_sequence (id, next_val) SELECT 1, COALESCE(MAX(sequence_id), 0) + 1 FROM messages WHERE true ON CONFLICT (id) DO NOTHING/; s/database_engine is DatabaseChoice/database_engine == DatabaseChoice/' \
  "$message_py"

phase letta-schema
python3 fetch-sdist.py letta "$LETTA_VERSION" "$SDIST_SHA256" /opt/letta/src >/dev/null

install -d -m 0750 -g letta /etc/letta
(umask 027; printf 'LETTA_PG_URI="postgresql://letta:%s@127.0.0.1:%s/letta"\n' "$PG_PASSWORD" "$PG_PORT" >/etc/letta/letta.env)
chgrp letta /etc/letta/letta.env
(cd "/opt/letta/src/letta-$LETTA_VERSION" && set -a && . /etc/letta/letta.env && set +a \
  && runuser -u letta -- env LETTA_PG_URI="$LETTA_PG_URI" HOME=/var/lib/letta /opt/letta/current/venv/bin/alembic upgrade head >/dev/null 2>&1)
phase letta-start-and-backup-timers
# A unit from stdin, started now and at boot.
run_unit() {
  cat >"/etc/systemd/system/$1"
  systemctl daemon-reload
  systemctl enable -q --now "$1"
}
run_unit letta.service <<EOF
[Unit]
After=network-online.target postgresql.service
[Service]
User=letta
EnvironmentFile=/etc/letta/letta.env
Environment=HOME=/var/lib/letta
WorkingDirectory=/var/lib/letta
ExecStart=/opt/letta/current/venv/bin/letta server --host 127.0.0.1 --port $LETTA_PORT
Restart=always
[Install]
WantedBy=multi-user.target
EOF

cat >/etc/systemd/system/pgbackrest-backup@.service <<EOF
[Service]
Type=oneshot
User=postgres
ExecStart=/usr/bin/pgbackrest --stanza=letta --type=%i backup
EOF
for kind in full diff; do
  printf '[Timer]\nOnCalendar=Sun *-*-* 01:00:00\nPersistent=true\nUnit=pgbackrest-backup@%s.service\n[Install]\nWantedBy=timers.target\n' \
    "$kind" >"/etc/systemd/system/pgbackrest-backup-$kind.timer"
done
systemctl daemon-reload
systemctl enable -q --now pgbackrest-backup-full.timer pgbackrest-backup-diff.timer

phase livekit
# Letta starts in the background (about 20 s) while LiveKit goes in.
useradd --system --no-create-home --shell /usr/sbin/nologin livekit
archive=livekit_${LIVEKIT_VERSION}_linux_amd64.tar.gz
grep " $archive\$" checksums.txt | sha256sum -c --quiet
mkdir -p "/opt/livekit/$LIVEKIT_VERSION" /etc/livekit
tar -xzf "$archive" -C "/opt/livekit/$LIVEKIT_VERSION"
ln -sfn "/opt/livekit/$LIVEKIT_VERSION" /opt/livekit/current
key=API$(python3 -c 'import secrets; print(secrets.token_hex(6))')
secret=$(python3 -c 'import secrets; print(secrets.token_urlsafe(36))')
(umask 027; cat >/etc/livekit/livekit.yaml <<EOF
port: $LIVEKIT_PORT
bind_addresses: [127.0.0.1]
rtc:
  tcp_port: 0
  udp_port: $LIVEKIT_UDP_PORT
  use_external_ip: false
  node_ip: 127.0.0.1
  interfaces: {includes: [lo]}
  enable_loopback_candidate: true
keys:
  $key: $secret
EOF
)
chgrp livekit /etc/livekit/livekit.yaml
printf 'net.core.rmem_max = 16777216\nnet.core.wmem_max = 16777216\n' >/etc/sysctl.d/60-livekit.conf
sysctl -q -p /etc/sysctl.d/60-livekit.conf || true
run_unit livekit.service <<EOF
[Service]
User=livekit
ExecStart=/opt/livekit/current/livekit-server --config /etc/livekit/livekit.yaml
Restart=always
[Install]
WantedBy=multi-user.target
EOF

phase agents-venv
mkdir -p /opt/livekit-agents
$uv venv -q --python /usr/bin/python3 /opt/livekit-agents/venv
$uv pip sync -q --python /opt/livekit-agents/venv/bin/python --require-hashes "agents-locks/livekit-agents-$AGENTS_VERSION.txt"

phase wait-for-health
wait_for() {
  local url=$1 deadline=$((SECONDS + 120))
  until python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$url" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "no answer from $url" >&2; exit 1; }
    sleep 0.5
  done
}
wait_for "http://127.0.0.1:$LIVEKIT_PORT/"
wait_for "http://127.0.0.1:$LETTA_PORT/v1/health/"
phase end
echo "plain-stack: healthy"
