"""The firewall computed from the inventory, on hosts with networks of their own (molecule.yml): each internal
port answers the hosts whose roles use it and drops everyone else, the outsider (a host in no group) included;
the public ports answer the outsider; the controller keeps its SSH.

A port is told "dropped" (the connection timed out: a rule ate the SYN) from "refused" (nothing listens: the
kernel answered) and "open". Without the firewall no port here would ever be "dropped".
"""
import json
import os
import re
import subprocess
import time

import pytest
import testinfra
import yaml
from stacktest import PROJECT, VARS, exposure, project_playbook, run_playbook

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
CONTROLLER_NET = "hsbox-split-ctl"
DB, LETTA, MEDIA = VARS["stack_db_address"], VARS["stack_letta_address"], VARS["stack_livekit_address"]
EDGE = "10.61.0.14"  # molecule.yml
OUTSIDER = "outside1"
# The exporters role's ports (its defaults: the split inventory keeps them).
VARS_EXPORTERS = {name: yaml.safe_load((PROJECT / "roles" / "exporters" / "defaults" / "main.yml").read_text())[
    f"exporters_{name}_port"] for name in ("node", "postgres", "pgbackrest")}

# Every target at once, each in a thread: a dropped one costs its timeout once.
PROBE = r"""
import concurrent.futures, json, socket, sys

def attempt(target):
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=4).close()
        return "open"
    except socket.timeout:
        return "dropped"
    except ConnectionRefusedError:
        return "refused"
    except OSError as error:
        return "error: %s" % error

with concurrent.futures.ThreadPoolExecutor(len(sys.argv) - 1) as pool:
    print(json.dumps(dict(zip(sys.argv[1:], pool.map(attempt, sys.argv[1:])))))
"""


def box(name):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=INVENTORY)


def setting(host, name):
    return box(host).ansible.get_variables()[name]


def reach(source, *targets):
    """{"address:port": "open" | "refused" | "dropped"} for TCP connections from `source` (a box or "controller")."""
    if source == "controller":
        result = subprocess.run(["ip", "netns", "exec", CONTROLLER_NET, "python3", "-c", PROBE, *targets],
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)
    result = box(source).run("python3 -c " + "'" + PROBE.replace("'", "'\\''") + "' " + " ".join(targets))
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def ports():
    return {
        "postgresql": VARS["postgresql_port"],
        "letta": setting("letta1", "letta_port"),
        "livekit": setting("media1", "livekit_port"),
        "livekit_rtc_tcp": setting("media1", "livekit_rtc_tcp_port"),
        "livekit_turn_tls": setting("media1", "livekit_turn_tls_port"),
        "edge_https": 443,
        "agent_health": VARS["livekit_agents_health_port"],
    }


def test_postgresql_answers_the_letta_host_only(ports):
    target = f"{DB}:{ports['postgresql']}"
    assert reach("letta1", target) == {target: "open"}
    assert reach("media1", target) == {target: "dropped"}
    assert reach(OUTSIDER, target) == {target: "dropped"}


def test_letta_answers_the_edge_and_the_agent_worker_host_only(ports):
    target = f"{LETTA}:{ports['letta']}"
    assert reach("media1", target) == {target: "open"}
    assert reach("edge1", target) == {target: "open"}
    assert reach(OUTSIDER, target) == {target: "dropped"}
    assert reach("db1", target) == {target: "dropped"}


def test_livekit_api_and_turn_answer_the_edge_in_front_of_them(ports):
    # The edge fronts LiveKit: its signal/API port and its TURN port (TLS ended at the edge) are internal.
    api, turn = f"{MEDIA}:{ports['livekit']}", f"{MEDIA}:{ports['livekit_turn_tls']}"
    assert reach("edge1", api, turn) == {api: "open", turn: "open"}
    assert reach(OUTSIDER, api, turn) == {api: "dropped", turn: "dropped"}
    assert reach("letta1", api, turn) == {api: "dropped", turn: "dropped"}


def test_a_port_no_other_host_uses_answers_nobody(ports):
    # The agent worker's health port listens on the media host's address; of the other hosts only the monitoring
    # host (edge1) probes it.
    target = f"{MEDIA}:{ports['agent_health']}"
    assert reach("media1", target) == {target: "open"}, "the worker's health port does not listen"
    assert reach(OUTSIDER, target) == {target: "dropped"}
    assert reach("letta1", target) == {target: "dropped"}


def test_exporter_ports_answer_the_monitoring_host_only():
    """Every host's exporters (node; PostgreSQL's and pgBackRest's on db1) answer the monitoring host, edge1; the
    outsider and the other hosts are dropped."""
    targets = [f"{address}:{VARS_EXPORTERS['node']}" for address in (DB, LETTA, MEDIA)] + [
        f"{DB}:{VARS_EXPORTERS['postgres']}", f"{DB}:{VARS_EXPORTERS['pgbackrest']}"]
    assert reach("edge1", *targets) == dict.fromkeys(targets, "open")
    assert reach(OUTSIDER, *targets) == dict.fromkeys(targets, "dropped")
    others = [f"{DB}:{VARS_EXPORTERS['node']}", f"{DB}:{VARS_EXPORTERS['postgres']}", f"{MEDIA}:{VARS_EXPORTERS['node']}"]
    assert reach("letta1", *others) == dict.fromkeys(others, "dropped")


def test_public_ports_answer_the_outsider(ports):
    # The edge's HTTPS, and LiveKit's ICE over TCP (media goes to the node itself, not through the edge).
    targets = [f"{EDGE}:{ports['edge_https']}", f"{MEDIA}:{ports['livekit_rtc_tcp']}"]
    assert reach(OUTSIDER, *targets) == dict.fromkeys(targets, "open")


def test_ssh_answers_the_controller_and_not_the_outsider():
    targets = [f"{address}:22" for address in (DB, LETTA, MEDIA, EDGE)]
    assert reach("controller", *targets) == dict.fromkeys(targets, "open")
    assert reach(OUTSIDER, *targets) == dict.fromkeys(targets, "dropped")


def test_the_outsider_is_left_alone():
    # A host in no group: site.yml's plays name groups, so nothing of the collection reaches it.
    assert box(OUTSIDER).run("test -e /usr/sbin/nft || test -e /etc/hybridstack").rc != 0


def harness(name, command):
    """A command on a box through scripts/box's own path into it (from inside its namespace: no rule cuts it)."""
    result = subprocess.run([str(PROJECT / "scripts" / "box"), "ssh", f"split-{name}", command],
                            capture_output=True, text=True, timeout=120, check=False)
    return result


def loaded_table(name):
    result = harness(name, "nft -s list table inet hybridstack")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_packets_no_rule_accepts_are_dropped_and_counted():
    reach(OUTSIDER, f"{DB}:{VARS['postgresql_port']}")
    counter = harness("db1", "nft -j list counter inet hybridstack dropped")
    assert counter.returncode == 0, counter.stderr
    packets = [item["counter"]["packets"] for item in json.loads(counter.stdout)["nftables"] if "counter" in item]
    assert packets and packets[0] > 0, counter.stdout


def test_rules_that_would_not_let_the_controller_in_are_refused_before_loading():
    before = loaded_table("letta1")
    result = run_playbook("converge.yml", "--limit", "letta1", extra_vars=[{"firewall_ssh_port": 2222}])
    assert result.rc != 0, result.tail()
    assert "would not accept this controller's own connection" in result.flat_output, result.tail()
    assert "Nothing was loaded" in result.flat_output, result.tail()
    assert loaded_table("letta1") == before


def test_rules_that_cut_the_controller_are_rolled_back_by_themselves():
    """A rule set without the SSH rule, loaded through the role's own apply script: the controller's new
    connections are dropped, and the timer the script armed restores the previous table by itself."""
    seconds = 15
    ssh = f"{LETTA}:22"
    before = loaded_table("letta1")
    cut = harness("letta1", "grep -v 'dport 22 ' /etc/hybridstack/firewall/rules.nft >/root/cut.nft && "
                            f"/usr/local/lib/hybridstack/firewall-apply load /root/cut.nft {seconds}")
    assert cut.returncode == 0, cut.stderr
    loaded = time.monotonic()
    try:
        assert reach("controller", ssh) == {ssh: "dropped"}, "the rule set under test did not cut the controller"
        while time.monotonic() - loaded < seconds + 20 and reach("controller", ssh) != {ssh: "open"}:
            time.sleep(1)
        back = time.monotonic() - loaded
    finally:
        # Whatever happened, the host must not stay cut off for the tests after this one.
        harness("letta1", "/usr/local/lib/hybridstack/firewall-apply rollback")
    assert back <= seconds + 5, f"the controller got in again {back:.0f} s after the load (rollback armed for {seconds} s)"
    assert harness("letta1", "/usr/local/lib/hybridstack/firewall-apply status").stdout.strip() == "rolled-back"
    assert loaded_table("letta1") == before


def test_a_changed_port_moves_its_rule_and_closes_the_old_one(ports):
    old, new = ports["livekit_rtc_tcp"], ports["livekit_rtc_tcp"] + 10
    try:
        result = run_playbook("converge.yml", "--limit", "media1", extra_vars=[{"livekit_rtc_tcp_port": new}])
        assert result.rc == 0, result.tail()
        # "dropped", not "refused": nothing listens on the old port any more, and no rule lets a packet reach it.
        assert reach(OUTSIDER, f"{MEDIA}:{new}", f"{MEDIA}:{old}") == {f"{MEDIA}:{new}": "open", f"{MEDIA}:{old}": "dropped"}
        table = loaded_table("media1")
        assert f"tcp dport {new} accept" in table and f"tcp dport {old} accept" not in table, table
    finally:
        result = run_playbook("converge.yml", "--limit", "media1")
    assert result.rc == 0, result.tail()
    assert reach(OUTSIDER, f"{MEDIA}:{old}") == {f"{MEDIA}:{old}": "open"}


def test_the_unit_that_loads_the_rules_at_boot_is_hardened():
    assert exposure(box("db1"), "hybridstack-firewall.service") <= 2.0


def test_after_a_reboot_the_rules_are_loaded_before_any_service_listens():
    restart = subprocess.run([str(PROJECT / "scripts" / "box"), "restart", "split-db1"],
                             capture_output=True, text=True, timeout=300, check=False)
    assert restart.returncode == 0, restart.stderr
    assert "hybridstack" in loaded_table("db1")

    def moment(unit, prop):
        result = harness("db1", f"systemctl show -P {prop} {unit}")
        assert result.stdout.strip().isdigit() and int(result.stdout) > 0, (unit, prop, result.stdout, result.stderr)
        return int(result.stdout)

    # The rules loaded (the oneshot unit active) before each listening service began to start.
    loaded = moment("hybridstack-firewall.service", "ActiveEnterTimestampMonotonic")
    starts = {unit: moment(unit, "InactiveExitTimestampMonotonic")
              for unit in ("ssh.service", "postgresql@17-main.service", "pgbackrest.service")
              if harness("db1", f"systemctl is-enabled --quiet {unit}").returncode == 0}
    assert "postgresql@17-main.service" in starts, starts
    assert all(loaded < start for start in starts.values()), (loaded, starts)
    # Back in service, behind the same rules: PostgreSQL answers Letta's host and drops the outsider.
    target = f"{DB}:{VARS['postgresql_port']}"
    deadline = time.monotonic() + 60
    while reach("letta1", target) != {target: "open"} and time.monotonic() < deadline:
        time.sleep(1)
    assert reach("letta1", target) == {target: "open"}
    assert reach(OUTSIDER, target) == {target: "dropped"}


def test_status_reports_a_listener_the_firewall_does_not_account_for():
    stray = 41999
    started = harness("letta1", f"systemd-run --quiet --unit=stray-listener --collect "
                                f"python3 -m http.server {stray} --bind {LETTA} --directory /usr/share/doc")
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 20
        while reach("letta1", f"{LETTA}:{stray}") != {f"{LETTA}:{stray}": "open"} and time.monotonic() < deadline:
            time.sleep(0.5)
        status = run_playbook(project_playbook("status.yml"))
    finally:
        harness("letta1", "systemctl stop stray-listener")
    flagged = re.findall(r"UNACCOUNTED (?:tcp|udp) \S+", status.flat_output)
    assert flagged == [f"UNACCOUNTED tcp {LETTA}:{stray}"], status.tail()
    # Every other socket is accounted for, each with who reaches it.
    assert f"{LETTA}:{setting('letta1', 'letta_port')} (" in status.flat_output, status.tail()


def test_pgbackrest_tls_server_answers_the_database_host_it_serves_only():
    # letta1 holds db1's repository behind pgBackRest's TLS server (molecule.yml, converge.yml).
    target = f"{LETTA}:8432"  # postgresql_backup_tls_server_port's default
    assert reach("db1", target) == {target: "open"}
    assert reach(OUTSIDER, target) == {target: "dropped"}
    assert reach("media1", target) == {target: "dropped"}
