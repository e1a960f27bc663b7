"""The box is a real Debian host: systemd is PID 1, units run, apt works, and
it survives a reboot like one."""
import json
import os
import secrets
import subprocess
import time
from pathlib import Path

import yaml
from stacktest import PROJECT, VARS, boot_id, restart_box

CACHE = Path(os.environ["HYBRIDSTACK_CACHE"])
MOLECULE = yaml.safe_load((Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "molecule.yml").read_text())
# The download caches molecule/_shared/create.yml binds into every box.
CACHE_BINDS = {CACHE / "box-apt-archives": "/var/cache/apt/archives",
               CACHE / "box-uv": "/var/cache/python-venv/uv"}


def test_systemd_is_pid_1(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in ("running", "degraded"), state


def test_it_is_debian_trixie(host):
    assert host.system_info.distribution == "debian"
    assert host.system_info.codename == "trixie"


def test_unit_started_and_enabled(host):
    unit = host.service(VARS["box_probe_unit"])
    assert unit.is_running
    assert unit.is_enabled


def test_package_installed_by_apt_runs(host):
    assert host.package(VARS["box_probe_package"]).is_installed
    assert host.run(VARS["box_probe_package"]).stdout.strip() == "Hello, world!"


def test_apt_installs_another_package(host):
    result = host.run("apt-get -o DPkg::Lock::Timeout=300 install -y -q sl")
    assert result.rc == 0, result.stderr
    assert host.package("sl").is_installed
    assert host.file("/usr/games/sl").mode & 0o111


def test_it_is_a_host_of_its_own_on_its_loopback_address(host):
    platform = MOLECULE["platforms"][0]
    resolved = host.run("getent ahostsv4 %s", platform["names"][0])
    assert resolved.rc == 0, resolved.stderr
    assert resolved.stdout.split()[0] == platform["address"]
    # The namespace is shared, so the runner sees the box's sshd (the
    # harness's way in) listening there and nowhere else.
    connection = host.ansible.get_variables()
    assert connection["ansible_host"] == platform["address"]
    sshd = subprocess.run(["ss", "-Hltn", f"sport = :{connection['ansible_port']}"],
                          capture_output=True, text=True, check=True)
    local_addresses = {line.split()[3].rsplit(":", 1)[0] for line in sshd.stdout.splitlines()}
    assert local_addresses == {platform["address"]}


def test_restart_boots_the_same_tree_with_its_binds(host):
    probe = host.service(VARS["box_probe_unit"])
    assert probe.is_enabled and probe.is_running
    token = secrets.token_hex(8)
    host.run_expect([0], f"echo {token} > /root/written-before-restart")
    booted_before = boot_id(host)

    restart_box()

    assert boot_id(host) != booted_before
    # Nothing started it: enabled before, so the boot did.
    assert host.service(VARS["box_probe_unit"]).is_running
    assert host.file("/root/written-before-restart").content_string.strip() == token
    for host_dir, box_dir in CACHE_BINDS.items():
        # A file the runner writes now shows through: the same folder is bound again.
        marker = host_dir / f"restart-probe-{token}"
        marker.write_text(token)
        try:
            assert host.file(f"{box_dir}/{marker.name}").content_string.strip() == token
        finally:
            marker.unlink()
    previous_boot = host.run("journalctl -b -1 -n 1 -o json --no-pager")
    assert previous_boot.rc == 0, previous_boot.stderr
    assert json.loads(previous_boot.stdout)["_BOOT_ID"] == booted_before.replace("-", "")


def box_processes(tree):
    """Processes whose mount namespace has TREE at "/" (what scripts/box destroy must end)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            lines = (proc / "mountinfo").read_text().splitlines()
        except OSError:
            continue
        roots = [line.split()[3] for line in lines if line.split()[4:5] == ["/"]]
        if roots[:1] == [str(tree)]:
            found.append(int(proc.name))
    return found


def test_destroy_ends_a_box_whose_nspawn_was_killed():
    # A KILLed systemd-nspawn leaves the box's systemd and journald running; they wrote
    # into the tree while destroy removed it ("Directory not empty", CI of 2026-12-07).
    box = [str(PROJECT / "scripts" / "box")]
    name = "box-orphaned"
    created = subprocess.run(box + ["create", name, "--address", "127.0.0.6"], capture_output=True, text=True,
                             check=False, timeout=300)
    tree = CACHE / "boxes" / name
    try:
        assert created.returncode == 0, created.stderr[-2000:]
        nspawn = int((tree / "pid").read_text())
        os.kill(nspawn, 9)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{nspawn}").exists():
            time.sleep(0.1)
        assert box_processes(tree / "root"), "the box's processes died with nspawn: nothing to prove"
    finally:
        destroyed = subprocess.run(box + ["destroy", name], capture_output=True, text=True, check=False, timeout=120)
    assert destroyed.returncode == 0, destroyed.stderr[-2000:]
    assert not tree.exists()
    assert box_processes(tree / "root") == []
    # destroy returned before the tree was removed: a detached rm empties its trash slot.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and list((CACHE / "trash").glob(f"{name}.*")):
        time.sleep(1)
    assert not list((CACHE / "trash").glob(f"{name}.*")), "the destroyed tree was never removed"


def shared_network():
    """The runner's own interfaces, addresses and routes: what a private box must never change."""
    return [subprocess.run(["ip", "-o", *what], capture_output=True, text=True, check=True).stdout
            for what in (["link"], ["addr"], ["route"], ["-6", "route"])]


def test_private_boxes_have_networks_of_their_own_linked_by_veth():
    """Two boxes in network namespaces of their own and a controller's net, linked by veth pairs made from
    inside those namespaces: each reaches the other, SSH sees the controller's address, rules loaded in a box
    filter that box only, downloads go through the uplink, and nothing of it touches the runner's network."""
    box = [str(PROJECT / "scripts" / "box")]
    names = {"box-net-ctl": "10.63.0.1", "box-net-a": "10.63.0.11", "box-net-b": "10.63.0.12"}

    def run(*args, timeout=300):
        result = subprocess.run(box + list(args), capture_output=True, text=True, check=False, timeout=timeout)
        assert result.returncode == 0, (args, result.stderr[-2000:])
        return result.stdout

    before = shared_network()
    try:
        run("net", "box-net-ctl", "--private", names["box-net-ctl"])
        for name in ("box-net-a", "box-net-b"):
            run("create", name, "--private", names[name], "--host", f"{names['box-net-b']} box-net-b b.example.test")
        for pair in (("box-net-ctl", "box-net-a"), ("box-net-ctl", "box-net-b"), ("box-net-a", "box-net-b")):
            run("link", *pair)
        assert shared_network() == before, "the runner's network changed"
        key = CACHE / "boxes" / "box-net-b" / "ssh_key"
        seen = subprocess.run(["ssh", "-q", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o",
                               "UserKnownHostsFile=/dev/null", "-o", f"ProxyCommand={box[0]} connect box-net-ctl %h %p",
                               "-i", str(key), f"root@{names['box-net-b']}", "echo $SSH_CONNECTION"],
                              capture_output=True, text=True, check=False, timeout=60)
        assert seen.stdout.split()[:1] == [names["box-net-ctl"]], seen.stderr
        # Through the uplink: apt and an HTTPS client, with the box's only route out.
        run("ssh", "box-net-a", "apt-get -q update >/dev/null && DEBIAN_FRONTEND=noninteractive "
                                "apt-get install -y -q nftables >/dev/null")
        probe = ("python3 -c 'import socket; socket.create_connection((\"b.example.test\", 22), 3); print(\"open\")'")
        assert run("ssh", "box-net-a", probe).strip() == "open"
        # A rule in b drops a's SSH; the runner's own view of the network is untouched.
        run("ssh", "box-net-b", "apt-get -q update >/dev/null && DEBIAN_FRONTEND=noninteractive "
                                "apt-get install -y -q nftables >/dev/null && "
                                f"nft add table inet t && nft add chain inet t input '{{ type filter hook input priority 0; }}' && "
                                f"nft add rule inet t input ip saddr {names['box-net-a']} tcp dport 22 drop")
        cut = subprocess.run(box + ["ssh", "box-net-a", probe.replace("3)", "2)")], capture_output=True, text=True,
                             check=False)
        assert cut.returncode != 0 and "timed out" in cut.stderr, cut.stderr
        assert shared_network() == before, "the runner's network changed"
        # A restart is a power cycle of the box's network too: the rule is gone, the link is back.
        run("restart", "box-net-b")
        assert run("ssh", "box-net-b", "nft list tables").strip() == ""
        assert run("ssh", "box-net-a", probe).strip() == "open"
    finally:
        for name in names:
            subprocess.run(box + ["destroy", name], capture_output=True, text=True, check=False, timeout=120)
    leftovers = subprocess.run(box + ["leftovers", "box-net"], capture_output=True, text=True, check=False)
    assert leftovers.returncode == 0, leftovers.stderr
    assert shared_network() == before
