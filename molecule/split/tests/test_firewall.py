"""The firewall computed from the inventory, on hosts with networks of their own (molecule.yml): each internal
port answers the hosts whose roles use it and drops everyone else, the outsider (a host in no group) included;
the public ports answer the outsider; the controller keeps its SSH.

A port is told "dropped" (the connection timed out: a rule ate the SYN) from "refused" (nothing listens: the
kernel answered) and "open". Without the firewall no port here would ever be "dropped".
"""
import json
import os
import subprocess

import pytest
import testinfra
from stacktest import PROJECT, VARS

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
CONTROLLER_NET = "hsbox-split-ctl"
DB, LETTA, MEDIA = VARS["stack_db_address"], VARS["stack_letta_address"], VARS["stack_livekit_address"]
OUTSIDER = "outside1"

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
                                capture_output=True, text=True, timeout=60)
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
        "agent_health": VARS["livekit_agents_health_port"],
    }


def test_postgresql_answers_the_letta_host_only(ports):
    target = f"{DB}:{ports['postgresql']}"
    assert reach("letta1", target) == {target: "open"}
    assert reach("media1", target) == {target: "dropped"}
    assert reach(OUTSIDER, target) == {target: "dropped"}


def test_letta_answers_the_agent_worker_host_only(ports):
    target = f"{LETTA}:{ports['letta']}"
    assert reach("media1", target) == {target: "open"}
    assert reach(OUTSIDER, target) == {target: "dropped"}
    assert reach("db1", target) == {target: "dropped"}


def test_a_port_no_other_host_uses_answers_nobody(ports):
    # The agent worker's health port listens on the media host's address; no role of another host uses it.
    target = f"{MEDIA}:{ports['agent_health']}"
    assert reach("media1", target) == {target: "open"}, "the worker's health port does not listen"
    assert reach(OUTSIDER, target) == {target: "dropped"}
    assert reach("letta1", target) == {target: "dropped"}


def test_public_ports_answer_the_outsider(ports):
    # No edge fronts LiveKit in this layout: clients reach its signal and ICE/TCP ports directly.
    targets = [f"{MEDIA}:{ports['livekit']}", f"{MEDIA}:{ports['livekit_rtc_tcp']}"]
    assert reach(OUTSIDER, *targets) == dict.fromkeys(targets, "open")


def test_ssh_answers_the_controller_and_not_the_outsider():
    targets = [f"{address}:22" for address in (DB, LETTA, MEDIA)]
    assert reach("controller", *targets) == dict.fromkeys(targets, "open")
    assert reach(OUTSIDER, *targets) == dict.fromkeys(targets, "dropped")


def test_the_outsider_is_left_alone():
    # A host in no group: site.yml's plays name groups, so nothing of the collection reaches it.
    assert box(OUTSIDER).run("test -e /usr/sbin/nft || test -e /etc/hybridstack").rc != 0
