"""The house reads as one design: one way to ask a host what it has, and one
variable's path short enough to follow (docs/architecture.md lists it)."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLE_FILES = sorted(path for path in (ROOT / "roles").rglob("*")
                    if path.is_file() and (path.suffix in (".yml", ".j2", ".py", ".sh") or path.parent.name == "files"))

# Ways a role could ask a host for state behind host_probe's back.
OTHER_PROBES = {
    "a checksum read by shell": re.compile(r"\bsha(1|256)sum\b"),
    "stat's format": re.compile(r"\bstat -c\b"),
    "a package list read by shell": re.compile(r"\bdpkg-query\b"),
    "a unit state read by shell": re.compile(r"systemctl is-(enabled|active)\b"),
    "a file's state read by the stat module": re.compile(r"^\s*ansible\.builtin\.stat:", re.M),
    "a file read by slurp": re.compile(r"^\s*ansible\.builtin\.slurp:", re.M),
    "a checksum compared in a condition": re.compile(r"hash\('sha1'\)"),
}
# Reads that are not of the host's state: each says why it is allowed.
ALLOWED = {
    # The offline archive is checked on the controller, before any host is asked.
    ("roles/livekit/tasks/release.yml", "a file's state read by the stat module"),
    # The sync record names the lock by its sha1 (records written by earlier runs stay valid).
    ("roles/python_venv/vars/main.yml", "a checksum compared in a condition"),
    # The renewal unit and the issuing script run on the host at their own time, not as probes of a run.
    ("roles/postgresql/templates/certificate-renewal.service.j2", "a checksum read by shell"),
}


def relative(path):
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("kind", OTHER_PROBES)
def test_roles_ask_a_host_what_it_has_only_through_host_probe(kind):
    pattern = OTHER_PROBES[kind]
    found = [relative(path) for path in ROLE_FILES
             if pattern.search(path.read_text(errors="replace")) and (relative(path), kind) not in ALLOWED]
    assert not found, f"{kind} in {found}: use hybridstack.letta_livekit.host_probe and the filters of plugins/filter/files.py"


# docs/architecture.md: from the inventory to ExecStart and the health probe.
LETTA_PORT_PATH = [
    "roles/letta/defaults/main.yml",
    "roles/letta/meta/argument_specs.yml",
    "roles/letta/tasks/service.yml",
    "roles/common/tasks/systemd_unit.yml",
    "roles/letta/templates/letta.service.j2",
    "roles/letta/tasks/health.yml",
    "roles/common/tasks/probe.yml",
]
# Input checks on the side, before any host changes.
LETTA_PORT_CHECKS = ["roles/letta/tasks/assert.yml", "roles/letta/vars/main.yml"]


# Plugins that read it for other hosts, on the side of that path: nginx's list of replicas (network.py's
# letta_endpoints, for the edge and the balancer) and the firewall rule that opens the port to the hosts that
# use it (firewall.py, added with the firewall role), and the health probe of each replica Prometheus runs
# (monitoring.py, added with the monitoring role). None adds a step between the inventory and ExecStart,
# so the path's count stays; each such reader is listed here and on the architecture page.
LETTA_PORT_READERS = ["plugins/filter/network.py", "plugins/filter/firewall.py", "plugins/filter/monitoring.py"]


def test_letta_port_crosses_at_most_eight_files_and_the_architecture_page_lists_them():
    assert len(LETTA_PORT_PATH) + 1 <= 8  # the inventory is the first
    naming = {relative(path) for path in (ROOT / "roles" / "letta").rglob("*")
              if path.is_file() and path.suffix in (".yml", ".j2") and re.search(r"\bletta_port\b", path.read_text())}
    assert naming <= set(LETTA_PORT_PATH + LETTA_PORT_CHECKS), naming - set(LETTA_PORT_PATH + LETTA_PORT_CHECKS)
    page = (ROOT / "docs" / "architecture.md").read_text()
    for step in LETTA_PORT_PATH + LETTA_PORT_CHECKS:
        assert f"`{step}`" in page, f"docs/architecture.md does not list {step}"


def test_letta_port_is_read_on_the_side_only_by_the_listed_plugins():
    naming = {relative(path) for path in (ROOT / "plugins").rglob("*.py") if re.search(r"\bletta_port\b", path.read_text())}
    assert naming == set(LETTA_PORT_READERS), naming ^ set(LETTA_PORT_READERS)
    page = (ROOT / "docs" / "architecture.md").read_text()
    for reader in LETTA_PORT_READERS:
        assert f"`{reader}`" in page, f"docs/architecture.md does not list {reader}"
