"""inventories/example on four boxes: Letta reaches PostgreSQL on another host over TLS (verify-full),
pg_hba.conf refuses hosts outside the client networks, Letta wants its password, the agent worker has it.

Clients that use host names run inside the boxes (the names resolve there, never on the runner). Programs
that need a secret run as the service's user in a transient unit reading the service's own environment file,
so no password reaches a command line.
"""
import json
import os
import re

import pytest
import testinfra
from stacktest import EPHEMERAL, PROJECT, VARS, exposure, read_recap, project_playbook, run_playbook

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
# The hosts of inventories/example/hosts.yml, one box each (molecule.yml).
BOXES = ("db1", "letta1", "media1", "edge1")
# The tests below name their boxes; none runs once per host.
testinfra_hosts = ["db1"]

LETTA_PYTHON = "/opt/letta/current/venv/bin/python"
LETTA_ENV = "/etc/letta/letta.env"
DB_PORT = VARS["postgresql_port"]
PSQL = f"runuser -u postgres -- psql -X -At -p {DB_PORT} -d {VARS.get('postgresql_db_name', 'letta')}"


def box(name):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=INVENTORY)


def as_service(host, user, env_file, program, *args):
    """Run `program args` as `user` with `env_file` loaded by systemd (the way the roles run alembic)."""
    argv = ["systemd-run", "--quiet", "--wait", "--pipe", "--collect", f"--uid={user}", f"--gid={user}",
            f"--property=EnvironmentFile={env_file}", program, *args]
    return host.run(" ".join("'" + part.replace("'", "'\\''") + "'" for part in argv))


def letta_python(code, *args):
    """Python in Letta's venv on the letta box, with Letta's environment (LETTA_PG_URI, PGSSLROOTCERT, ...)."""
    result = as_service(box("letta1"), "letta", LETTA_ENV, LETTA_PYTHON, "-c", code, *args)
    assert result.rc == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# Tries the database with Letta's own URI, changed one way at a time; prints {case: "ok" | error}.
DB_ATTEMPTS = r"""
import asyncio, json, os, ssl, sys
from urllib.parse import urlsplit
import asyncpg, pg8000.native, psycopg2
from letta.database_utils import get_database_uri_for_context

uri = os.environ["LETTA_PG_URI"]
parts = urlsplit(uri)
ca = os.environ["PGSSLROOTCERT"]
results = {}

def attempt(case, connect):
    try:
        results[case] = connect()
    except Exception as error:
        results[case] = type(error).__name__ + ": " + str(error).replace(parts.password, "***")

def libpq(host):
    with psycopg2.connect(uri.replace("@" + parts.hostname + ":", "@" + host + ":"), connect_timeout=10) as conn:
        with conn.cursor() as cursor:
            cursor.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            return "ok ssl=%s" % cursor.fetchone()[0]

async def letta_asyncpg(host):
    # The keywords Letta's engine hands asyncpg: its async URI's query (ssl=verify-full).
    async_uri = get_database_uri_for_context(uri, "async")
    query = dict(pair.split("=", 1) for pair in urlsplit(async_uri).query.split("&"))
    conn = await asyncpg.connect(user=parts.username, password=parts.password, host=host, port=parts.port,
                                 database=parts.path.lstrip("/"), **query)
    try:
        return "ok ssl=%s" % await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    finally:
        await conn.close()

def from_address(source, tls):
    context = ssl.create_default_context(cafile=ca) if tls else False
    conn = pg8000.native.Connection(parts.username, host=parts.hostname, port=parts.port, password=parts.password,
                                    database=parts.path.lstrip("/"), source_address=(source, 0), ssl_context=context,
                                    timeout=10)
    try:
        return "ok from %s" % conn.run("SELECT host(inet_client_addr())")[0][0]
    finally:
        conn.close()

attempt("libpq by name", lambda: libpq(parts.hostname))
attempt("libpq by address", lambda: libpq(sys.argv[1]))
attempt("asyncpg by name", lambda: asyncio.run(letta_asyncpg(parts.hostname)))
attempt("asyncpg by address", lambda: asyncio.run(letta_asyncpg(sys.argv[1])))
for source in sys.argv[2:]:
    attempt("tls from " + source, lambda: from_address(source, True))
    attempt("plain from " + source, lambda: from_address(source, False))
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def db_attempts():
    return letta_python(DB_ATTEMPTS, VARS["stack_db_address"], VARS["stack_letta_address"])


def test_letta_reaches_the_database_by_name_over_verified_tls(db_attempts):
    assert db_attempts["libpq by name"] == "ok ssl=True", db_attempts
    assert db_attempts["asyncpg by name"] == "ok ssl=True", db_attempts


def test_verify_full_refuses_a_name_the_certificate_does_not_cover(db_attempts):
    # The same server, reached by its address, which its certificate does not name.
    assert "does not match host name" in db_attempts["libpq by address"], db_attempts
    assert "SSLCertVerificationError" in db_attempts["asyncpg by address"], db_attempts


def test_pg_hba_admits_the_letta_host_over_tls_only(db_attempts):
    letta = VARS["stack_letta_address"]
    assert db_attempts["tls from " + letta] == "ok from " + letta, db_attempts
    assert "no encryption" in db_attempts["plain from " + letta], db_attempts


def test_pg_hba_refuses_a_host_outside_the_client_networks():
    # The firewall keeps every other host away from the port (test_firewall.py): the database host's own
    # address, which no rule filters, plays a host outside the client networks.
    db = box("db1")
    address = VARS["stack_db_address"]
    for sslmode in ("require", "disable"):
        answer = db.run(f"runuser -u postgres -- psql -X -w -c 'SELECT 1' "
                        f"'host={address} port={DB_PORT} dbname=letta user=letta sslmode={sslmode} connect_timeout=10'")
        assert answer.rc != 0 and f'no pg_hba.conf entry for host "{address}"' in answer.stderr, (sslmode, answer.stderr)


def test_pg_hba_holds_hostssl_and_no_plain_entry_for_the_client_network():
    db = box("db1")
    entries = [line.split() for line in db.file("/etc/postgresql/17/main/pg_hba.conf").content_string.splitlines()
               if line.strip() and not line.lstrip().startswith("#")]
    network = VARS["stack_letta_address"] + "/32"
    assert [entry[0] for entry in entries if network in entry] == ["hostssl"], entries


def test_the_database_serves_modern_tls_with_its_own_ca():
    db = box("db1")
    settings = dict(line.split("|") for line in db.check_output(
        f"{PSQL} -c \"SELECT name, setting FROM pg_settings WHERE name IN ('ssl', 'ssl_min_protocol_version')\"").splitlines())
    assert settings == {"ssl": "on", "ssl_min_protocol_version": "TLSv1.3"}
    key = db.file("/etc/postgresql/17/main/tls/server.key")
    assert (key.user, key.mode) == ("postgres", 0o600)
    ca_dir = db.file("/etc/postgresql/hybridstack-ca")
    assert (ca_dir.user, ca_dir.mode) == ("root", 0o700)
    # The CA key stays on the database host; the letta host holds the CA certificate only.
    letta = box("letta1")
    ca = letta.file("/etc/letta/db-ca.crt")
    assert (ca.user, ca.group, ca.mode) == ("root", "letta", 0o640)
    assert ca.content_string == db.file("/etc/postgresql/17/main/tls/ca.crt").content_string
    assert letta.run("grep -rl 'PRIVATE KEY' /etc/letta").stdout.strip() == ""


def served_certificate_days_left(db):
    """Days until the end of the certificate PostgreSQL serves now."""
    end = db.check_output(f"echo | openssl s_client -starttls postgres -connect {VARS['stack_db_address']}:{DB_PORT} "
                          "2>/dev/null | openssl x509 -noout -enddate | cut -d= -f2")
    return (int(db.check_output(f"date -d '{end}' +%s")) - int(db.check_output("date +%s"))) // 86400


def test_a_certificate_near_its_end_is_reported_then_renewed_by_the_timer():
    db = box("db1")
    timer = "hybridstack-postgresql-certificate.timer"
    assert db.service(timer).is_enabled and db.service(timer).is_running
    assert exposure(db, "hybridstack-postgresql-certificate.service") <= 2.0
    tls = "/etc/postgresql/17/main/tls"
    # The same CA and names, ten days of validity: what the host would serve
    # had no run renewed it for almost a year.
    short = db.run(f"names=$(openssl x509 -in {tls}/server.crt -noout -ext subjectAltName | tail -n 1 "
                   "| sed 's/DNS://g; s/IP Address://g; s/,//g') && "
                   f"/usr/local/lib/hybridstack/issue-server-certificate.sh /etc/postgresql/hybridstack-ca {tls} 10 $names "
                   ">/dev/null && systemctl reload postgresql@17-main.service")
    assert short.rc == 0, short.stderr
    assert served_certificate_days_left(db) < 21
    status = run_playbook(project_playbook("status.yml"))
    assert status.rc != 0, status.tail()
    assert f"certificate {tls}/server.crt expires" in " ".join(status.output.split()), status.tail()
    renewal = db.run("systemctl start hybridstack-postgresql-certificate.service")
    assert renewal.rc == 0, db.run("journalctl -u hybridstack-postgresql-certificate.service -n 20 --no-pager").stdout
    assert served_certificate_days_left(db) > 300
    status = run_playbook(project_playbook("status.yml"))
    assert status.rc == 0, status.tail()


def operator_tls_files(directory, names):
    """A CA, and a server certificate and key for `names` signed by it, as an operator would hand them over."""
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "operator test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=90))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(ca_key, hashes.SHA256()))
    sans = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False).sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    files = {"postgresql_tls_ca_file": ("ca.crt", ca.public_bytes(serialization.Encoding.PEM)),
             "postgresql_tls_cert_file": ("server.crt", cert.public_bytes(serialization.Encoding.PEM)),
             "postgresql_tls_key_file": ("server.key", key.private_bytes(
                 serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))}
    for name, content in files.values():
        (directory / name).write_bytes(content)
    return {variable: str(directory / name) for variable, (name, _content) in files.items()}


def test_check_diff_with_operator_tls_files_shows_no_private_key():
    """--check --diff with the operator's own certificate, key and CA, which differ from the host's: the diff
    may show the certificates, never the key, nor any password."""
    db = box("db1")
    names = db.check_output("openssl x509 -in /etc/postgresql/17/main/tls/server.crt -noout -ext subjectAltName "
                            "| tail -n 1 | sed 's/DNS://g; s/IP Address://g; s/,//g'").split()
    files = operator_tls_files(EPHEMERAL / "operator-tls", names)
    result = run_playbook("converge.yml", "--check", "--diff", "--limit", "db1", extra_vars=[files])
    assert result.rc == 0, result.tail()
    assert "Install the operator's" in result.output, "the run did not reach the TLS files"
    key_lines = [line for line in open(files["postgresql_tls_key_file"]).read().splitlines() if "-----" not in line]
    assert not any(line in result.output for line in key_lines), "the private key is in the output"
    for name in ("postgresql_db_password", "letta_db_password", "letta_server_password", "livekit_api_secret"):
        if VARS.get(name):
            assert str(VARS[name]) not in result.output, name
    assert read_recap(result.stdout, "db1")["failed"] == 0


def test_letta_uri_names_the_database_host_with_verify_full():
    letta = box("letta1")
    wanted = [f'^LETTA_PG_URI="postgresql://letta:[^@]*@{VARS["stack_db_name"]}:{DB_PORT}/letta\\?sslmode=verify-full"$',
              '^PGSSLROOTCERT="/etc/letta/db-ca.crt"$']
    for pattern in wanted:
        assert letta.run(f"grep -cE '{pattern}' {LETTA_ENV}").stdout.strip() == "1", pattern


# letta-client (in Letta's venv) against the server by its name, as a client on another host would.
LETTA_CLIENT = r"""
import json, os, sys
import letta_client
base_url, body = sys.argv[1], json.loads(sys.argv[2])
results = {}
try:
    letta_client.Letta(base_url=base_url, max_retries=0).agents.list()
    results["without password"] = "answered"
except letta_client.APIStatusError as error:
    results["without password"] = error.status_code
client = letta_client.Letta(base_url=base_url, api_key=os.environ["LETTA_SERVER_PASSWORD"], max_retries=0)
agent = client.agents.create(name="split-offline-agent", **body)
results["created"] = agent.id
results["listed"] = [listed.id for listed in client.agents.list()]
client.agents.delete(agent.id)
print(json.dumps(results))
"""


# Letta opens a connection per request (its SQLAlchemy pooling is off by default), and such a connection
# can live shorter than any polling of pg_stat_ssl under load: the server itself logs every connection it
# authorizes, with its TLS protocol, while log_connections is on.
CLUSTER_LOG = "$(pg_lsclusters -h | awk -v port=%s '$3 == port {print $7}')" % DB_PORT


@pytest.fixture(scope="module")
def agent_created():
    """letta-client's results, and the TLS part of every connection of the letta role the database authorized meanwhile."""
    db = box("db1")
    db.run_expect([0], f"{PSQL} -c 'ALTER SYSTEM SET log_connections = on' -c 'SELECT pg_reload_conf()'")
    start = int(db.check_output(f"stat -c %s {CLUSTER_LOG}"))
    body = (PROJECT / "roles" / "letta" / "files" / "offline-agent.json").read_text()
    try:
        results = letta_python(LETTA_CLIENT, f"http://{VARS['stack_letta_name']}:8283", body)
    finally:
        logged = db.check_output(f"tail -c +{start + 1} {CLUSTER_LOG}")
        db.run_expect([0], f"{PSQL} -c 'ALTER SYSTEM RESET log_connections' -c 'SELECT pg_reload_conf()'")
    seen = re.findall(r"connection authorized: user=letta database=\S+(?: application_name=\S+)?(.*)$", logged, re.M)
    return results, seen


def test_an_agent_is_created_with_the_password_and_401_without(agent_created):
    results = agent_created[0]
    assert results["without password"] == 401, results
    assert results["created"] in results["listed"], results


def test_every_connection_of_the_letta_server_is_tls(agent_created):
    seen = agent_created[1]
    assert seen, "the database authorized no connection of the letta role while an agent was created"
    assert all(re.search(r"SSL enabled \(protocol=TLSv1\.3,", tls) for tls in seen), seen


# From the livekit box with the worker's own environment (LETTA_BASE_URL, LETTA_API_KEY).
WORKER_TO_LETTA = r"""
import json, os, urllib.error, urllib.request
def status(headers):
    request = urllib.request.Request(os.environ["LETTA_BASE_URL"] + "/v1/agents/", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
print(json.dumps({"with": status({"Authorization": "Bearer " + os.environ["LETTA_API_KEY"]}), "without": status({})}))
"""


def test_the_agent_worker_reaches_letta_with_the_password_it_was_given():
    livekit = box("media1")
    env_file = livekit.check_output("systemctl show -p EnvironmentFiles --value livekit-agent.service").split()[0]
    result = as_service(livekit, "livekit-agent", env_file, "/usr/bin/python3", "-c", WORKER_TO_LETTA)
    assert result.rc == 0, result.stderr
    assert json.loads(result.stdout) == {"with": 200, "without": 401}


def test_the_operator_smoke_test_passes_on_every_host():
    result = run_playbook(project_playbook("verify.yml"))
    assert result.rc == 0, result.tail()
    for name in BOXES:
        assert read_recap(result.stdout, name)["failed"] == 0


def test_check_mode_on_the_converged_hosts_changes_nothing():
    result = run_playbook("converge.yml", "--check", "--diff")
    assert result.rc == 0, result.tail()
    for name in BOXES:
        recap = read_recap(result.stdout, name)
        assert recap["changed"] == 0 and recap["failed"] == 0, (name, result.tail())
