"""The monitoring host of inventories/scaled (db, 127.0.0.31), asked the way an operator asks.

Prometheus and Alertmanager run on db; every box runs its exporters. The
alerts reach a webhook receiver this module runs on the runner (the address
the scenario's monitoring_webhook_url names), through the real Alertmanager.
Runs after test_scale.py (file order): the faults here are undone before the
next test.
"""
import os
import re
import threading
import time
import uuid

import pytest
import testinfra
from alerting import Monitor, Webhook, basic
from stacktest import VARS, exposure, http, unit_property
from test_scale import ADDRESS

MONITOR = Monitor(ADDRESS["db"], 9090, 9093)
LIVEKIT_METRICS_PORT = 6789
SECRETS = {name: VARS[name] for name in ("monitoring_web_password", "monitoring_webhook_password",
                                         "livekit_prometheus_password", "exporters_redis_password",
                                         "exporters_web_password")}
# The rules' `for:`, the scrape and evaluation intervals and Alertmanager's
# group timings are seconds in the scenario: a fault is notified within this.
ALERT_SECONDS = 120


def box(name):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


@pytest.fixture(scope="module")
def webhook():
    receiver = Webhook()
    yield receiver
    receiver.close()


def console():
    """The stack-at-a-glance page (/consoles/stack.html) as the operator's browser gets it."""
    status, page = MONITOR.get(f"{MONITOR.prometheus}/consoles/stack.html")
    assert status == 200, page
    return page


def implied_targets():
    """What the inventory implies, from the collection's own filter over the scenario's inventory."""
    result = box("db").ansible(
        "debug", "msg={{ groups | hybridstack.letta_livekit.monitoring_targets(hostvars) }}", check=False)
    return sorted((item["job"], item["target"]) for item in result["msg"])


# --- targets ------------------------------------------------------------------

def test_every_target_the_inventory_implies_is_scraped_and_up():
    implied = implied_targets()
    # Every kind the layout has: exporters, both nodes' own metrics, the probes through the blackbox exporter.
    assert {job for job, _target in implied} == {
        "prometheus", "alertmanager", "node", "postgres", "pgbackrest", "redis", "nginx", "livekit",
        "probe_letta", "probe_livekit", "probe_agents"}, implied
    # The earlier tests restarted services: their probes may need a scrape or two.
    deadline, down, failing = time.monotonic() + 120, None, None
    while time.monotonic() < deadline:
        targets = MONITOR.active_targets()
        scraped = sorted((target["labels"]["job"], target["labels"]["instance"]) for target in targets)
        down = [(target["labels"]["job"], target["labels"]["instance"], target["lastError"])
                for target in targets if target["health"] != "up"]
        failing = [(item["metric"]["job"], item["metric"]["instance"]) for item in MONITOR.query("probe_success == 0")]
        if scraped and not down and not failing:
            break
        time.sleep(3)
    scraped_jobs = sorted((job if not job.startswith("livekit_") else "livekit", instance) for job, instance in scraped)
    assert scraped_jobs == sorted(implied), (scraped_jobs, implied)
    assert (down, failing) == ([], [])
    # The console page shows each of them, up.
    page = console()
    shown = re.findall(r'<tr class="(up|down)" data-job="([^"]+)" data-host="([^"]+)">', page)
    assert len(shown) == len(implied) and {state for state, _job, _host in shown} == {"up"}, page
    assert sorted(job for _state, job, _host in shown) == sorted(job for job, _instance in scraped), page


# --- faults, alerts, resolution ---------------------------------------------------

# The newest backup set's directory in db's repository: a backup cannot be written while it is closed.
BACKUP_DIR = "/var/lib/pgbackrest/backup/letta"
# (box, how to break it, how to mend it, the alerts it raises).
FAULTS = [
    ("b", "systemctl stop letta.service", "systemctl start letta.service", [("LettaReplicaUnhealthy", "b")]),
    ("a", "systemctl stop livekit-server.service", "systemctl start livekit-server.service",
     [("LiveKitNodeGone", "a"), ("ServiceDown", "a")]),
    ("a", "systemctl stop livekit-agent.service", "systemctl start livekit-agent.service", [("AgentWorkerGone", "a")]),
    # A backup run that fails leaves its unit failed; the next one that succeeds clears it.
    ("db", f"chmod 000 {BACKUP_DIR} && ! systemctl start pgbackrest-backup@diff.service",
     f"chmod 750 {BACKUP_DIR} && systemctl start pgbackrest-backup@diff.service", [("BackupFailed", "db")]),
]


def test_faults_fire_alerts_that_reach_the_webhook_and_resolve(webhook):
    """A Letta replica, a LiveKit node and an agent worker stopped and a backup made to fail, at once: each alert
    reaches the webhook through Alertmanager, with the receiver's bearer token; each resolves once mended."""
    assert box("db").run(f"stat -c %a {BACKUP_DIR}").stdout.strip() == "750"
    expected = [alert for _box, _break, _mend, alerts in FAULTS for alert in alerts]
    since = time.monotonic()
    try:
        for name, breaking, _mend, _alerts in FAULTS:
            result = box(name).run(breaking)
            assert result.rc == 0, (name, breaking, result.stderr)
        webhook.wait(MONITOR, expected, "firing", since, ALERT_SECONDS)
    finally:
        mended = time.monotonic()
        results = [(name, mend, box(name).run(mend)) for name, _break, mend, _alerts in FAULTS]
    assert [(name, mend) for name, mend, result in results if result.rc != 0] == []
    webhook.wait(MONITOR, expected, "resolved", mended, ALERT_SECONDS + 120)
    assert {message["authorization"] for message in webhook.received} == {f"Bearer {VARS['monitoring_webhook_password']}"}


# --- LiveKit's own metrics ---------------------------------------------------------

def livekit_metric(name, node):
    status, text = http("GET", f"http://{ADDRESS[node]}:{LIVEKIT_METRICS_PORT}/metrics",
                        headers=basic("prometheus", VARS["livekit_prometheus_password"]), timeout=5)
    assert status == 200, text
    values = [float(line.split()[-1]) for line in text.splitlines()
              if line.startswith(name + "{") or line.startswith(name + " ")]
    return sum(values)


def test_livekit_gauges_count_the_room_and_participants_of_a_running_session():
    """Two rtc SDK participants in a room on node a: node a's participants gauge counts them while they are in it,
    Prometheus scraped the same, and the gauge falls back once they leave."""
    from livekit import api
    from test_scale import KEY, SECRET, livekit, livekit_ws, run_in_box
    before = livekit_metric("livekit_participant_total", "a")
    room = f"metrics-{uuid.uuid4().hex[:6]}"
    spec = {"key": KEY, "secret": SECRET, "room": room, "frames": 4000,
            "publisher_url": livekit_ws("a"), "subscriber_url": livekit_ws("a")}
    session = threading.Thread(target=run_in_box, args=("a", "rtc_audio.py", spec), daemon=True)
    session.start()
    seen, deadline = [], time.monotonic() + 90
    while session.is_alive() and time.monotonic() < deadline:
        seen.append(livekit_metric("livekit_participant_total", "a"))
        if seen[-1] >= before + 2:
            break
        time.sleep(0.5)
    # livekit_room_total stayed 0 on the node during such sessions (1.13.5): the room is read from the API.
    rooms = [room.name for room in livekit("a", lambda lk: lk.room.list_rooms(api.ListRoomsRequest())).rooms]
    assert seen and seen[-1] >= before + 2, (seen, rooms)
    assert room in rooms
    # Prometheus scraped the same while the session lasts.
    scraped, deadline = 0.0, time.monotonic() + 40
    while scraped < before + 2 and time.monotonic() < deadline:
        result = MONITOR.query('max_over_time(livekit_participant_total{host="a"}[1m])')
        scraped = float(result[0]["value"][1]) if result else 0.0
        time.sleep(2)
    assert scraped >= before + 2, (before, scraped)
    # So does node a's row of the console page.
    shown, deadline = 0, time.monotonic() + 40
    while shown < before + 2 and time.monotonic() < deadline:
        row = re.search(r'<tr data-host="a">.*?<td class="participants">([0-9]+)</td>', console())
        shown = int(row.group(1)) if row else 0
        time.sleep(2)
    assert shown >= before + 2, (before, shown)
    session.join(timeout=120)
    deadline, after = time.monotonic() + 60, None
    while time.monotonic() < deadline:
        after = livekit_metric("livekit_participant_total", "a")
        if after <= before:
            break
        time.sleep(1)
    assert after <= before, (before, after)


# --- who may ask ---------------------------------------------------------------------

@pytest.mark.parametrize("url", [f"{MONITOR.prometheus}/api/v1/targets", f"{MONITOR.prometheus}/consoles/stack.html",
                                 f"{MONITOR.alertmanager}/api/v2/alerts"])
def test_prometheus_and_alertmanager_refuse_wrong_credentials(url):
    assert http("GET", url, headers=basic("admin", "not-" + VARS["monitoring_web_password"]))[0] == 401
    assert http("GET", url)[0] == 401
    assert MONITOR.get(url)[0] == 200


@pytest.mark.parametrize("node", ["a", "b"])
def test_livekit_metrics_refuse_wrong_credentials(node):
    url = f"http://{ADDRESS[node]}:{LIVEKIT_METRICS_PORT}/metrics"
    assert http("GET", url, headers=basic("prometheus", "wrong-password-of-the-test"))[0] == 401
    assert http("GET", url)[0] == 401


def test_every_exporter_asks_for_its_basic_auth():
    """The boxes share the runner's loopback and run no firewall: the exporters' basic auth is what keeps their
    metrics to the monitoring host."""
    exporters = [target for job, target in implied_targets() if job in ("node", "postgres", "pgbackrest", "redis", "nginx")]
    assert len(exporters) == 7, exporters
    login = basic(VARS.get("exporters_web_username", "prometheus"), VARS["exporters_web_password"])
    for target in exporters:
        url = f"http://{target}/metrics"
        assert http("GET", url, timeout=10)[0] == 401, url
        assert http("GET", url, headers=basic("prometheus", "not-" + VARS["exporters_web_password"]), timeout=10)[0] == 401
        assert http("GET", url, headers=login, timeout=30)[0] == 200, url


def test_the_blackbox_exporter_answers_on_loopback_only():
    listening = [line.split()[3] for line in box("db").run("ss -Hltn 'sport = :9115'").stdout.splitlines()]
    assert listening == ["127.0.0.1:9115"]


# --- secrets and hardening ---------------------------------------------------------

def test_monitoring_secrets_are_in_no_journal_process_or_readable_file():
    for name in ADDRESS:
        host = box(name)
        journal = host.run("journalctl --no-pager -o cat").stdout
        processes = host.run("ps -eo args").stdout
        readable = host.run("grep -rlsF -e {} /etc /var/lib/prometheus 2>/dev/null | xargs -r stat -c '%a %U:%G %n'".format(
            " -e ".join(f"'{secret}'" for secret in SECRETS.values()))).stdout
        for label, secret in SECRETS.items():
            assert secret not in journal, (name, label)
            assert secret not in processes, (name, label)
        # Where a secret is on disk it is readable by root and the service's group only.
        for line in readable.splitlines():
            mode, owner, path = line.split(" ", 2)
            assert mode[-1] == "0", (name, line)


@pytest.mark.parametrize("name, unit", [
    ("db", "prometheus.service"), ("db", "prometheus-alertmanager.service"),
    ("db", "prometheus-blackbox-exporter.service"), ("db", "prometheus-postgres-exporter.service"),
    ("db", "prometheus-redis-exporter.service"), ("db", "prometheus-nginx-exporter.service"),
    ("a", "prometheus-node-exporter.service")])
def test_monitoring_units_are_hardened(name, unit):
    assert exposure(box(name), unit) <= 2.0
    assert unit_property(box(name), unit, "ActiveState") == "active"
