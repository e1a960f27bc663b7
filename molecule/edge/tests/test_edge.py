"""The edge as real clients meet it: certificates from Pebble through http-01,
HTTPS to Letta with letta-client, WSS and media through LiveKit with the
official rtc SDK (direct, then relay-only through LiveKit's TURN), TURN/TLS
on 443 by name, a forced renewal.

The rtc SDK's WebRTC library checks a TURN/TLS certificate against its own
built-in roots, not SSL_CERT_FILE, so with Pebble's certificate it closes
the TLS session right after the server's certificate (nginx's stream log:
sent=~1270 received=290) and relays over TURN/UDP instead; the TURN/TLS
route itself is checked with a TURN Allocate over TLS trusting Pebble's root.

Clients that use the domains run inside the stack box (the names resolve
there only); raw TLS and HTTP checks that need no name resolution run on the
runner against the box's address. Only the stack box is a test host here.
"""
import base64
import http.client
import json
import os
import shlex
import socket
import ssl
import struct
import time

import pytest
from alerting import Monitor, Webhook
from stacktest import PROJECT, VARS, exposure, project_playbook, read_recap, run_playbook

testinfra_hosts = ["stack"]

ADDRESS = VARS["edge_listen_addresses"][0]
LETTA = VARS["edge_letta_domain"]
MONITOR = Monitor(VARS["exporters_listen_address"], 9090, 9093)
LIVEKIT = VARS["edge_livekit_domain"]
TURN = VARS["edge_turn_domain"]
TESTS_DIR = "/root/edge-tests"
PEBBLE_ROOT = f"{TESTS_DIR}/pebble-root.pem"
AGENTS_PYTHON = "/opt/livekit-agents/venv/bin/python"
LETTA_PYTHON = "/opt/letta/current/venv/bin/python"
MIN_FRAMES = 50


def run_in_box(host, command, document=None, env=""):
    """A command in the stack box, a JSON document on its stdin; returns the result."""
    stdin = ""
    if document is not None:
        encoded = base64.b64encode(json.dumps(document).encode()).decode()
        stdin = f"echo {encoded} | base64 -d | "
    return host.run(f"{stdin}{env} {command}")


def served_certificate(host, name=LETTA):
    """Serial and issuer of the certificate nginx serves for `name` (asked in the box)."""
    out = host.check_output(
        f"openssl s_client -connect {ADDRESS}:443 -servername {name} </dev/null 2>/dev/null"
        " | openssl x509 -noout -serial -issuer -ext subjectAltName")
    return out


def verify_chain(host, cafile):
    return host.run(f"openssl s_client -connect {ADDRESS}:443 -servername {LETTA} -CAfile {cafile}"
                    " -verify_return_error </dev/null")


@pytest.fixture(scope="module")
def pebble_root(host):
    """Pebble's root, fetched from its management API; the only CA the clients below trust."""
    fetch = ("import ssl, sys, urllib.request; "
             "tls = ssl.create_default_context(cafile='/etc/nginx/edge/acme-ca.pem'); "
             "sys.stdout.write(urllib.request.urlopen('https://pebble:15000/roots/0', context=tls).read().decode())")
    result = host.run(f"python3 -c {shlex.quote(fetch)} > {PEBBLE_ROOT}")
    assert result.rc == 0, result.stderr
    root = host.file(PEBBLE_ROOT).content_string
    assert "BEGIN CERTIFICATE" in root
    return root


@pytest.fixture(scope="module")
def runner_tls(pebble_root, tmp_path_factory):
    path = tmp_path_factory.mktemp("pebble") / "root.pem"
    path.write_text(pebble_root)
    return ssl.create_default_context(cafile=str(path))


def https_get(context, name, path):
    """GET over TLS to the edge's address with `name` as SNI and Host: (status, headers, body)."""
    with socket.create_connection((ADDRESS, 443), timeout=20) as raw:
        with context.wrap_socket(raw, server_hostname=name) as tls:
            # HTTP/1.0: the whole body, unchunked, then the connection closes.
            tls.sendall(f"GET {path} HTTP/1.0\r\nHost: {name}\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    head, _separator, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {key.lower(): value.strip() for key, _colon, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


# --- certificates ---------------------------------------------------------------

def test_certbot_got_the_certificate_from_pebble_through_http01(host, pebble_root):
    assert verify_chain(host, PEBBLE_ROOT).rc == 0
    served = served_certificate(host)
    assert "Pebble Intermediate" in served, served
    for name in (LETTA, LIVEKIT, TURN):
        assert f"DNS:{name}" in served, served
    renewal = host.file("/etc/letsencrypt/renewal/edge.conf").content_string
    assert f"server = {VARS['edge_acme_directory_url']}" in renewal
    # Pebble's validation fetched every name's token from nginx on port 80.
    answered = host.check_output(
        "grep 'GET /.well-known/acme-challenge/[^ ]* HTTP/1.1\" 200 .*LetsEncrypt-Pebble-VA' /var/log/nginx/access.log"
        " | wc -l")
    assert int(answered) >= 3


def test_the_system_trust_store_does_not_trust_it(host):
    result = verify_chain(host, "/etc/ssl/certs/ca-certificates.crt")
    assert result.rc != 0 and "unable to get local issuer certificate" in result.stdout + result.stderr


def test_a_name_the_edge_does_not_serve_gets_no_certificate(runner_tls):
    with pytest.raises(ssl.SSLError):
        https_get(runner_tls, "other.edge.test", "/")


# --- Letta ----------------------------------------------------------------------

def test_plain_http_to_letta_only_redirects():
    for method in ("GET", "POST"):
        connection = http.client.HTTPConnection(ADDRESS, 80, timeout=20)
        connection.request(method, "/v1/agents/", body=b"{}" if method == "POST" else None,
                           headers={"Host": LETTA, "Authorization": f"Bearer {VARS['letta_server_password']}"})
        answer = connection.getresponse()
        body = answer.read()
        connection.close()
        assert answer.status == 301, (method, answer.status, body)
        assert answer.getheader("Location") == f"https://{LETTA}/v1/agents/"
        assert b"agent" not in body


def test_the_balancer_answers_beside_the_edge_in_one_nginx(host):
    # One nginx: the edge's main configuration includes the balancer's site, both over the letta group's replica.
    connection = http.client.HTTPConnection(VARS["letta_balancer_listen_address"], VARS["letta_balancer_port"], timeout=20)
    connection.request("GET", "/v1/health/")
    answer = connection.getresponse()
    assert answer.status == 200 and json.loads(answer.read())["status"] == "ok"
    connection.close()
    assert host.run("pgrep -c -x nginx -u www-data").stdout.strip() != "0"
    masters = host.run("pgrep -x nginx -P 1").stdout.split()
    assert len(masters) == 1, masters
    upstreams = host.file("/etc/nginx/nginx.conf").content_string + host.file(
        "/etc/nginx/conf.d/letta-balancer.conf").content_string
    replica = f"{VARS['letta_host']}:{VARS['letta_port']}"
    assert upstreams.count(f"server {replica}") == 2, upstreams


def test_https_answers_with_security_headers_and_no_version(runner_tls):
    status, headers, body = https_get(runner_tls, LETTA, "/v1/health/")
    assert status == 200 and json.loads(body)["status"] == "ok", body
    assert headers["server"] == "nginx"
    assert headers["strict-transport-security"].startswith("max-age=")
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"


def test_letta_client_over_https_with_the_server_password(host, pebble_root):
    agent = json.loads((PROJECT / "roles" / "letta" / "files" / "offline-agent.json").read_text())
    result = run_in_box(host, f"{LETTA_PYTHON} {TESTS_DIR}/letta_check.py", {
        "url": f"https://{LETTA}", "password": VARS["letta_server_password"], "cafile": PEBBLE_ROOT, "agent": agent})
    assert result.rc == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["messages"] > 0, report
    assert report["no_password_status"] == 401, report
    assert report["wrong_password_status"] == 401, report


# --- LiveKit: signalling and media ------------------------------------------------

def media(host, relay, **extra):
    document = {"url": f"wss://{LIVEKIT}", "key": VARS["livekit_api_key"], "secret": VARS["livekit_api_secret"],
                "room": f"edge-{'relay' if relay else 'direct'}-{int(time.time())}", "relay": relay,
                "frames": MIN_FRAMES, **extra}
    # The SDK's WebSocket trusts SSL_CERT_FILE only: Pebble's root.
    result = run_in_box(host, f"{AGENTS_PYTHON} {TESTS_DIR}/media_check.py", document,
                        env=f"SSL_CERT_FILE={PEBBLE_ROOT}")
    assert result.rc == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def turn_tls_sessions(host):
    """The sessions nginx's stream log shows on the TURN route so far."""
    return host.run(f"grep -c ' sni={TURN} route=edge_turn_tls ' /var/log/nginx/stream.log").stdout.strip()


def recv_exactly(tls, size):
    data = b""
    while len(data) < size:
        chunk = tls.recv(size - len(data))
        assert chunk, f"connection closed after {len(data)} of {size} bytes"
        data += chunk
    return data


def turn_allocate_over_tls(context):
    """An unauthenticated TURN Allocate over TLS to port 443 by the TURN name: (message type, realm)."""
    transaction = os.urandom(12)
    # REQUESTED-TRANSPORT: UDP (17).
    attributes = struct.pack("!HH", 0x0019, 4) + bytes([17, 0, 0, 0])
    request = struct.pack("!HHI", 0x0003, len(attributes), 0x2112A442) + transaction + attributes
    with socket.create_connection((ADDRESS, 443), timeout=20) as raw:
        with context.wrap_socket(raw, server_hostname=TURN) as tls:
            tls.sendall(request)
            header = recv_exactly(tls, 20)
            kind, length, _cookie = struct.unpack("!HHI", header[:8])
            assert header[8:20] == transaction
            body = recv_exactly(tls, length)
    realm, offset = None, 0
    while offset + 4 <= len(body):
        attribute, size = struct.unpack("!HH", body[offset:offset + 4])
        if attribute == 0x0014:
            realm = body[offset + 4:offset + 4 + size].decode()
        offset += 4 + size + (-size % 4)
    return kind, realm


def test_audio_flows_between_two_participants_over_wss(host, pebble_root):
    report = media(host, relay=False)
    assert report["frames"] >= MIN_FRAMES, report
    assert report["peak"] > 1000, report


def test_turn_tls_on_443_is_livekits_turn_behind_pebbles_certificate(runner_tls):
    # TLS ends in nginx (trusted through Pebble's root only), TURN answers
    # behind it: an Allocate without credentials is refused with LiveKit's realm.
    kind, realm = turn_allocate_over_tls(runner_tls)
    assert kind == 0x0113 and realm == "livekit", (hex(kind), realm)


def test_audio_flows_relay_only_through_turn(host, pebble_root):
    sessions_before = int(turn_tls_sessions(host))
    report = media(host, relay=True)
    assert report["frames"] >= MIN_FRAMES, report
    assert report["peak"] > 1000, report
    selected = report["publisher"] + report["listener"]
    assert selected and all(candidate["type"] == "RELAY" for candidate in selected), report
    # Both clients were sent turns:<turn domain>:443 and tried it through nginx.
    time.sleep(2)
    assert int(turn_tls_sessions(host)) > sessions_before


def test_a_token_signed_with_a_wrong_secret_is_refused(host, pebble_root):
    report = media(host, relay=False, wrong_secret="w" * 40)
    assert report["joined"] is False, report


# --- renewal, check mode, status ------------------------------------------------------

def force_renewal(host, *settings):
    """certbot.service run once with force-renewal (and `settings`) added to cli.ini; the certificate nginx serves
    before and after. Through the sandboxed unit the timer starts: certbot reads cli.ini, so one line there forces
    the renewal the unit's own command line would skip."""
    before = served_certificate(host)
    lines = "\n".join(("force-renewal = True",) + settings)
    host.run_expect([0], f"cp -p /etc/letsencrypt/cli.ini /root/cli.ini.saved && printf '%s\\n' {shlex.quote(lines)}"
                         " >> /etc/letsencrypt/cli.ini")
    try:
        result = host.run("systemctl start certbot.service")
    finally:
        host.run_expect([0], "mv /root/cli.ini.saved /etc/letsencrypt/cli.ini")
    assert result.rc == 0, host.run("journalctl -u certbot.service -n 40 --no-pager").stdout
    deadline, after = time.monotonic() + 30, before
    while after == before and time.monotonic() < deadline:
        time.sleep(1)
        after = served_certificate(host)
    serial = [line for line in before.splitlines() if line.startswith("serial=")]
    assert serial and serial[0] not in after, (before, after)
    return before, after


def days_left(host):
    end = host.check_output(f"openssl s_client -connect {ADDRESS}:443 -servername {LETTA} </dev/null 2>/dev/null"
                            " | openssl x509 -noout -enddate").split("=", 1)[1]
    return (time.mktime(time.strptime(end, "%b %d %H:%M:%S %Y %Z")) - time.time()) / 86400


def test_a_forced_renewal_reloads_nginx_with_a_new_certificate(host, pebble_root):
    assert host.run("systemctl is-enabled certbot.timer").stdout.strip() == "enabled"
    environment = host.check_output("systemctl show -p Environment --value certbot.service")
    assert "REQUESTS_CA_BUNDLE=/etc/nginx/edge/acme-ca.pem" in environment
    nginx_pid = host.check_output("systemctl show -p MainPID --value nginx.service")
    force_renewal(host)
    # Reloaded, not restarted.
    assert host.check_output("systemctl show -p MainPID --value nginx.service") == nginx_pid
    assert verify_chain(host, PEBBLE_ROOT).rc == 0
    # The renewed key kept the group nginx's unprivileged master reads it with.
    assert host.check_output("stat -L -c '%U %G %a' /etc/nginx/edge/tls/privkey.pem") == "root www-data 640"


def test_a_short_lived_certificate_fires_the_expiry_alert_until_renewed(host, pebble_root):
    """The monitoring host (stack) probes the edge's names: a certificate from Pebble's ten-day profile fires
    CertificateExpiring (within monitoring_certificate_warn_days), which reaches the webhook through Alertmanager
    and resolves once a ninety-day certificate replaces it."""
    expected = [("CertificateExpiring", "stack")]
    webhook = Webhook()
    try:
        since = time.monotonic()
        force_renewal(host, "preferred-profile = shortlived")
        assert days_left(host) < 11
        webhook.wait(MONITOR, expected, "firing", since, 180)
        mended = time.monotonic()
        # certbot keeps the profile of the last request for its renewals: name the default one again.
        force_renewal(host, "preferred-profile = default")
        assert days_left(host) > 80
        webhook.wait(MONITOR, expected, "resolved", mended, 180)
    finally:
        webhook.close()


def test_every_target_the_edge_box_implies_is_up():
    """The edge's names probed through nginx with Pebble's root, Letta and LiveKit behind it, the exporters."""
    deadline, down = time.monotonic() + 120, None
    while time.monotonic() < deadline:
        down = [(target["labels"]["job"], target["labels"]["instance"], target["lastError"])
                for target in MONITOR.active_targets() if target["health"] != "up"]
        failing = [(item["metric"]["job"], item["metric"]["instance"]) for item in MONITOR.query("probe_success == 0")]
        if not down and not failing:
            break
        time.sleep(3)
    assert (down, failing) == ([], [])
    jobs = {target["labels"]["job"] for target in MONITOR.active_targets()}
    assert {"node", "postgres", "nginx", "probe_letta", "probe_livekit", "probe_certificates"} <= jobs, jobs


def test_site_in_check_mode_changes_nothing_on_the_converged_boxes():
    result = run_playbook(project_playbook("site.yml"), "--check", "--diff")
    assert result.rc == 0, result.tail()
    recap = read_recap(result.stdout)
    assert recap["failed"] == 0 and recap["changed"] == 0, result.tail()


def test_status_reports_the_edge_and_the_ports_to_open():
    result = run_playbook(project_playbook("status.yml"))
    assert result.rc == 0, result.tail()
    assert "nginx.service: was running" in result.stdout, result.tail()
    assert "ports to open to clients:" in result.stdout
    for port in ("tcp/80", "tcp/443", f"udp/{VARS['livekit_turn_udp_port']}"):
        assert port in result.stdout, result.tail()
    assert "All healthy" in result.stdout


@pytest.mark.parametrize("unit", ["nginx.service", "certbot.service"])
def test_the_units_the_edge_ships_or_narrows_are_hardened(host, unit):
    assert host.check_output(f"systemctl show -p ProtectSystem --value {unit}") == "strict"
    assert exposure(host, unit) <= 2.0


def test_nginx_master_runs_unprivileged(host):
    master = host.check_output("systemctl show -p MainPID --value nginx.service")
    assert host.check_output(f"ps -o user= -p {master}") == "www-data"
    assert host.check_output(f"grep ^CapEff /proc/{master}/status").split()[1] == "0000000000000400"
