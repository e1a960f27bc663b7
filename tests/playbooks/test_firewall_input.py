"""The firewall's input is checked in site.yml's validation pass, naming the variable, before any host is
contacted (every host points at a loopback port where nothing listens; see sitecheck.py)."""
from sitecheck import VALID, assert_refused_untouched, inventory, run_site

# Two hosts that other hosts reach on documentation addresses: not a loopback-only layout.
SPLIT = {
    "db1": (["postgres"], dict(VALID, firewall_addresses=["192.0.2.10"])),
    "app1": (["letta", "livekit"], dict(VALID, firewall_addresses=["192.0.2.11"])),
}


def split(tmp_path, **firewall):
    return inventory(tmp_path, {name: (groups, dict(host_vars, firewall_enabled=True, **firewall))
                                for name, (groups, host_vars) in SPLIT.items()})


def test_valid_firewall_input_passes_validation(tmp_path):
    rc, out = run_site(split(tmp_path, firewall_ssh_sources=["198.51.100.0/24", "db1"],
                             firewall_extra_rules=[{"source": "any", "port": "9100", "protocol": "tcp"}]))
    assert "UNREACHABLE" in out or "unreachable=1" in out, out


def test_every_bad_firewall_input_is_named_at_once(tmp_path):
    rc, out = run_site(split(tmp_path, firewall_ssh_sources=["198.51.100.7/24", "bastion"],
                             firewall_extra_rules=[{"source": "any", "port": 70000, "protocol": "tcp"}],
                             firewall_rollback_seconds=3))
    assert_refused_untouched(rc, out, "'198.51.100.7/24'", "'bastion'", "firewall_ssh_sources", "firewall_extra_rules[0]",
                             "firewall_rollback_seconds")


def test_a_trailing_newline_is_refused(tmp_path):
    rc, out = run_site(split(tmp_path, firewall_ssh_sources=["198.51.100.0/24\n"]))
    assert_refused_untouched(rc, out, "firewall_ssh_sources")
    rc, out = run_site(split(tmp_path, firewall_ssh_sources=["198.51.100.0/24"],
                             firewall_extra_rules=[{"source": "198.51.100.0/24\n", "port": 22, "protocol": "tcp"}]))
    assert_refused_untouched(rc, out, "firewall_extra_rules[0].source")


def test_an_empty_ssh_source_list_is_refused_beyond_loopback(tmp_path):
    rc, out = run_site(split(tmp_path))
    assert_refused_untouched(rc, out, "firewall_ssh_sources", "empty")


def test_a_host_name_as_ansible_host_needs_firewall_addresses(tmp_path):
    path = inventory(tmp_path, {"db1": (["postgres"], dict(VALID, firewall_enabled=True, ansible_host="db.example.test",
                                                           firewall_ssh_sources=["198.51.100.0/24"]))})
    rc, out = run_site(path)
    assert_refused_untouched(rc, out, "'db.example.test'", "firewall_addresses")
