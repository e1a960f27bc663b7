"""plugins/filter/firewall.py: the inbound rules each host's firewall derives from the inventory, its input
checks, the controller check and status.yml's report of listening sockets."""
import pathlib

import jinja2
import pytest

from ansible_collections.hybridstack.letta_livekit.plugins.filter.firewall import (
    FirewallInputError, firewall_accepts, firewall_address_problems, firewall_controller,
    firewall_extra_rule_problems, firewall_host_addresses, firewall_loopback_only, firewall_reach,
    firewall_rule_problems, firewall_rules, firewall_source_problems, ss_listeners)

ROOT = pathlib.Path(__file__).resolve().parents[2]
SETTINGS = {"ssh_sources": ["198.51.100.0/24"], "ssh_port": 22, "extra_rules": [], "controller": ""}


def inventory(hosts, **groups):
    """hosts: name -> variables; groups: name -> host names."""
    return hosts, dict(groups, all=list(hosts))


def split():
    """inventories/example: database, Letta, LiveKit (TURN/TLS behind the edge) and the edge, one host each."""
    return inventory(
        {"db1": {"ansible_host": "192.0.2.10"},
         "letta1": {"ansible_host": "192.0.2.11", "letta_port": 8283},
         "media1": {"ansible_host": "192.0.2.12", "livekit_turn_enabled": True, "livekit_turn_tls_port": 5349,
                    "livekit_turn_external_tls": True},
         "edge1": {"ansible_host": "192.0.2.13", "edge_turn_domain": "turn.example.com"}},
        postgres=["db1"], letta=["letta1"], livekit=["media1"], edge=["edge1"])


def scaled(edge=False):
    """inventories/scaled: db1 runs PostgreSQL, Redis and the balancer; app1 and app2 a Letta replica, a LiveKit
    node and an agent worker each."""
    app = {"livekit_rtc_udp_port": 0, "livekit_agents_worker_enabled": True, "letta_port": "8283"}
    hosts = {"db1": {"ansible_host": "192.0.2.20"},
             "app1": dict(app, ansible_host="192.0.2.21"),
             "app2": dict(app, ansible_host="192.0.2.22")}
    groups = {"postgres": ["db1"], "redis": ["db1"], "letta_balancer": ["db1"], "letta": ["app1", "app2"],
              "livekit": ["app1", "app2"]}
    if edge:
        hosts["edge1"] = {"ansible_host": "192.0.2.23"}
        groups["edge"] = ["edge1"]
    return inventory(hosts, **groups)


def rules_of(host, layout, **settings):
    hostvars, groups = layout
    return firewall_rules(host, hostvars, groups, dict(SETTINGS, **settings))


def by_comment(rules):
    return {rule["comment"]: rule for rule in rules}


def opened(rules):
    """proto/port -> 'anywhere' or the sorted sources."""
    return {"%s/%s" % (rule["proto"], rule["port"]): "anywhere" if rule["anywhere"]
            else sorted(rule["sources4"] + rule["sources6"]) for rule in rules}


# --- the split layout -----------------------------------------------------------------------------------------

def test_split_database_is_open_to_letta_only():
    assert opened(rules_of("db1", split())) == {"tcp/22": ["198.51.100.0/24"], "tcp/5432": ["192.0.2.11"]}


def test_split_letta_is_open_to_the_edge_and_the_agent_hosts():
    rules = by_comment(rules_of("letta1", split()))
    rule = rules["letta from edge, letta_balancer, livekit"]
    assert (rule["proto"], rule["port"], rule["sources4"], rule["peers"]) == (
        "tcp", "8283", ["192.0.2.12", "192.0.2.13"], ["edge1", "media1"])


def test_split_livekit_signal_and_turn_tls_only_from_the_edge_media_and_turn_udp_from_anywhere():
    assert opened(rules_of("media1", split())) == {
        "tcp/22": ["198.51.100.0/24"],
        "tcp/7880": ["192.0.2.13"],
        "udp/50000-60000": "anywhere",
        "tcp/7881": "anywhere",
        "udp/3478": "anywhere",
        "tcp/5349": ["192.0.2.13"],
    }


def test_split_edge_is_public_on_its_own_ports():
    hostvars, groups = split()
    hostvars["edge1"].update(edge_http_port=8080, edge_https_port=8443)
    assert opened(rules_of("edge1", (hostvars, groups))) == {
        "tcp/22": ["198.51.100.0/24"], "tcp/8080": "anywhere", "tcp/8443": "anywhere"}


def test_turn_tls_is_public_when_no_edge_ends_tls_for_it():
    hostvars, groups = split()
    hostvars["media1"]["livekit_turn_external_tls"] = False
    assert opened(rules_of("media1", (hostvars, groups)))["tcp/5349"] == "anywhere"


def test_every_rule_names_its_service():
    for host in ("db1", "letta1", "media1", "edge1"):
        for rule in rules_of(host, split()):
            assert rule["service"] and rule["comment"].startswith(rule["service"]), rule


# --- the scaled layout ----------------------------------------------------------------------------------------

def test_scaled_database_host_serves_postgres_redis_and_the_balancer():
    assert opened(rules_of("db1", scaled())) == {
        "tcp/22": ["198.51.100.0/24"],
        "tcp/5432": ["192.0.2.21", "192.0.2.22"],
        "tcp/6379": ["192.0.2.21", "192.0.2.22"],
        # No edge: Letta's clients reach the balancer directly.
        "tcp/8283": "anywhere",
    }


def test_scaled_replica_is_open_to_the_balancer_and_the_other_node_not_to_itself():
    rule = by_comment(rules_of("app1", scaled()))["letta from edge, letta_balancer, livekit"]
    assert (rule["sources4"], rule["peers"]) == (["192.0.2.20", "192.0.2.22"], ["db1", "app2"])


def test_scaled_livekit_without_an_edge_is_public_and_the_worker_health_port_is_known_but_closed():
    rules = by_comment(rules_of("app1", scaled()))
    assert rules["livekit signal, public"]["anywhere"]
    assert opened(rules_of("app1", scaled()))["udp/50000-60000"] == "anywhere"
    health = rules["livekit agent worker health, this host only"]
    assert (health["port"], health["anywhere"], health["sources4"], health["sources6"]) == ("8081", False, [], [])


def test_with_an_edge_the_balancer_and_livekit_are_open_to_the_edge_and_the_nodes_only():
    assert opened(rules_of("db1", scaled(edge=True)))["tcp/8283"] == ["192.0.2.21", "192.0.2.22", "192.0.2.23"]
    assert opened(rules_of("app1", scaled(edge=True)))["tcp/7880"] == ["192.0.2.22", "192.0.2.23"]


def test_a_changed_letta_port_moves_its_rule():
    hostvars, groups = scaled()
    hostvars["app1"]["letta_port"] = 8300
    ports = opened(rules_of("app1", (hostvars, groups)))
    assert "tcp/8300" in ports and "tcp/8283" not in ports
    # The other replica keeps the port its inventory gives it.
    assert "tcp/8283" in opened(rules_of("app2", (hostvars, groups)))


def test_a_port_the_inventory_leaves_unset_is_the_roles_default():
    hostvars, groups = scaled()
    del hostvars["app1"]["letta_port"]
    assert "tcp/8283" in opened(rules_of("app1", (hostvars, groups)))
    hostvars["db1"]["redis_port"] = 6380
    assert "tcp/6380" in opened(rules_of("db1", (hostvars, groups)))


def test_the_pgbackrest_tls_repository_host_and_its_postgres_hosts():
    hostvars, groups = scaled()
    hostvars["backup1"] = {"ansible_host": "192.0.2.30", "postgresql_backup_tls_server_port": 8433}
    groups["all"].append("backup1")
    hostvars["db1"].update(postgresql_backup_repo_type="tls", postgresql_backup_repo_host="192.0.2.30")
    assert opened(rules_of("backup1", (hostvars, groups))) == {"tcp/22": ["198.51.100.0/24"], "tcp/8433": ["192.0.2.20"]}
    assert opened(rules_of("db1", (hostvars, groups)))["tcp/5432"] == ["192.0.2.21", "192.0.2.22", "192.0.2.30"]
    hostvars["db1"]["postgresql_backup_enabled"] = "false"
    assert "tcp/8433" not in opened(rules_of("backup1", (hostvars, groups)))


def test_the_tls_server_port_defaults_to_the_repository_host_entry_points():
    hostvars, groups = scaled()
    hostvars["backup1"] = {"ansible_host": "192.0.2.30"}
    groups["all"].append("backup1")
    # Named by its inventory name this time; the port is only in postgresql_backup's repository_host spec.
    hostvars["db1"].update(postgresql_backup_repo_type="tls", postgresql_backup_repo_host="backup1")
    assert opened(rules_of("backup1", (hostvars, groups)))["tcp/8432"] == ["192.0.2.20"]


def test_a_repository_host_outside_the_inventory_gets_no_postgres_rule_by_name():
    hostvars, groups = scaled()
    hostvars["db1"].update(postgresql_backup_repo_type="tls", postgresql_backup_repo_host="backup.example.test")
    assert opened(rules_of("db1", (hostvars, groups)))["tcp/5432"] == ["192.0.2.21", "192.0.2.22"]


# --- sources ----------------------------------------------------------------------------------------------------

def test_a_host_name_stands_for_its_firewall_addresses():
    hostvars, groups = split()
    hostvars["edge1"]["firewall_addresses"] = ["203.0.113.9", "2001:db8::9"]
    rule = rules_of("db1", (hostvars, groups), ssh_sources=["edge1"])[0]
    assert (rule["sources4"], rule["sources6"], rule["peers"]) == (["203.0.113.9"], ["2001:db8::9"], ["edge1"])
    assert by_comment(rules_of("letta1", (hostvars, groups)))["letta from edge, letta_balancer, livekit"]["sources4"] == [
        "192.0.2.12", "203.0.113.9"]


def test_ipv6_sources_go_to_ip6_rules():
    hostvars, groups = split()
    hostvars["letta1"]["firewall_addresses"] = ["2001:db8::11"]
    rules = rules_of("db1", (hostvars, groups), ssh_sources=["2001:db8:1::/48", "198.51.100.7"])
    assert (rules[0]["sources4"], rules[0]["sources6"]) == (["198.51.100.7"], ["2001:db8:1::/48"])
    postgres = by_comment(rules)["postgresql from letta"]
    assert (postgres["sources4"], postgres["sources6"]) == ([], ["2001:db8::11"])
    text = render(rules)
    assert "ip6 saddr { 2001:db8::11 } tcp dport 5432 accept" in text
    assert "ip saddr { 198.51.100.7 } tcp dport 22 accept" in text
    assert "ip6 saddr { 2001:db8:1::/48 } tcp dport 22 accept" in text
    assert "ip saddr {  }" not in text and "ip6 saddr {  }" not in text


def test_sources_a_wider_network_covers_are_left_out():
    rule = rules_of("db1", split(), ssh_sources=["198.51.100.0/24", "198.51.100.7", "198.51.100.0/24"])[0]
    assert rule["sources4"] == ["198.51.100.0/24"]


def test_the_controller_is_always_let_in_to_ssh():
    rules = rules_of("db1", split(), ssh_sources=[], controller="203.0.113.50")
    assert by_comment(rules)["ssh from the controller"]["sources4"] == ["203.0.113.50"]
    assert firewall_accepts(rules, "203.0.113.50", 22)
    assert not firewall_accepts(rules, "203.0.113.51", 22)


@pytest.mark.parametrize("controller", ["198.51.100.7", "127.0.0.1", "::1"])
def test_a_controller_the_ssh_sources_or_loopback_let_in_adds_no_rule(controller):
    # So runs from several administrators' machines within firewall_ssh_sources load the same rules.
    assert rules_of("db1", split(), controller=controller) == rules_of("db1", split())


# --- the controller check -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("203.0.113.50 51234 192.0.2.10 22", {"source": "203.0.113.50", "port": 22}),
    ("2001:db8::5 51234 2001:db8::10 2222", {"source": "2001:db8::5", "port": 2222}),
    ("::ffff:203.0.113.50 51234 ::ffff:192.0.2.10 22", {"source": "203.0.113.50", "port": 22}),
    ("", {}), ("203.0.113.50 51234 192.0.2.10 22\n", {}), ("a b c d", {}), (None, {}),
])
def test_ssh_connection_parsed(text, expected):
    assert firewall_controller(text) == expected


def test_rules_that_open_ssh_on_another_port_than_the_controller_came_in_on_do_not_accept_it():
    rules = rules_of("db1", split(), controller="203.0.113.50", ssh_port=2222)
    controller = firewall_controller("203.0.113.50 51234 192.0.2.10 22")
    assert not firewall_accepts(rules, controller["source"], controller["port"])
    assert firewall_accepts(rules, controller["source"], 2222)


def test_accepts_loopback_public_ports_ranges_and_listed_sources_only():
    rules = rules_of("media1", split())
    assert firewall_accepts(rules, "127.0.0.1", 9999)
    assert firewall_accepts(rules, "203.0.113.1", 55000, "udp")
    assert not firewall_accepts(rules, "203.0.113.1", 55000, "tcp")
    assert firewall_accepts(rules, "192.0.2.13", 7880)
    assert not firewall_accepts(rules, "192.0.2.10", 7880)
    assert not firewall_accepts(rules, "not-an-address", 22)


# --- input checks -------------------------------------------------------------------------------------------

def test_good_sources_pass():
    hostvars, groups = split()
    assert firewall_source_problems(["198.51.100.0/24", "2001:db8::/32", "203.0.113.5", "edge1"],
                                    "firewall_ssh_sources", groups, hostvars) == []


@pytest.mark.parametrize("item, says", [
    ("bastion", "'bastion' is neither an IP address, a CIDR network nor a host of the inventory"),
    ("198.51.100.7/24", "'198.51.100.7/24' has host bits set (the network is 198.51.100.0/24)"),
    ("198.51.100.0/33", "'198.51.100.0/33' is not an IP address or CIDR network"),
    ("198.51.100.0/24\n", "is not an IP address or CIDR network"),
    ("edge1\n", "is not an IP address or CIDR network"),
    ("fe80::1%eth0", "is not an IP address or CIDR network"),
    ("", "is not an IP address or CIDR network"),
])
def test_bad_sources_are_named_with_the_variable(item, says):
    hostvars, groups = split()
    problems = firewall_source_problems(["198.51.100.0/24", item], "firewall_ssh_sources", groups, hostvars)
    assert len(problems) == 1 and problems[0].startswith("firewall_ssh_sources: ") and says in problems[0], problems


def test_good_extra_rules_pass_and_become_rules():
    hostvars, groups = split()
    extra = [{"source": "any", "port": 9100, "protocol": "tcp"},
             {"source": "edge1", "port": "10000-10010", "protocol": "udp", "comment": "media relay"},
             {"source": "2001:db8::/64", "port": "8080", "protocol": "tcp"}]
    assert firewall_extra_rule_problems(extra, groups, hostvars) == []
    ports = opened(rules_of("db1", (hostvars, groups), extra_rules=extra))
    assert (ports["tcp/9100"], ports["udp/10000-10010"], ports["tcp/8080"]) == (
        "anywhere", ["192.0.2.13"], ["2001:db8::/64"])
    assert "media relay" in by_comment(rules_of("db1", (hostvars, groups), extra_rules=extra))


@pytest.mark.parametrize("item, says", [
    ({"source": "any", "port": 70000, "protocol": "tcp"}, "port must be 1-65535"),
    ({"source": "any", "port": 0, "protocol": "tcp"}, "port must be 1-65535"),
    ({"source": "any", "port": "9000-8000", "protocol": "tcp"}, "port must be 1-65535"),
    ({"source": "any", "port": "9000\n", "protocol": "tcp"}, "port must be 1-65535"),
    ({"source": "any", "port": True, "protocol": "tcp"}, "port must be 1-65535"),
    ({"source": "any", "port": 9000, "protocol": "icmp"}, "protocol must be tcp or udp"),
    ({"source": "any", "port": 9000, "protocol": "tcp\n"}, "protocol must be tcp or udp"),
    ({"source": "nowhere", "port": 9000, "protocol": "tcp"}, "firewall_extra_rules[1].source: 'nowhere' is neither"),
    ({"source": "10.0.0.1/8", "port": 9000, "protocol": "tcp"}, "has host bits set"),
    ({"source": "any", "port": 9000}, "missing protocol"),
    ({"source": "any", "port": 9000, "protocol": "tcp", "proto": "udp"}, "unknown keys proto"),
    ({"source": "any", "port": 9000, "protocol": "tcp", "comment": 'a "quote"'}, "comment must be"),
    ("tcp/9000", "must be a mapping"),
])
def test_bad_extra_rules_are_named_with_their_index(item, says):
    hostvars, groups = split()
    problems = firewall_extra_rule_problems([{"source": "any", "port": 22, "protocol": "tcp"}, item], groups, hostvars)
    assert len(problems) == 1 and problems[0].startswith("firewall_extra_rules[1]") and says in problems[0], problems


def test_a_host_without_an_ip_address_needs_firewall_addresses():
    hostvars, groups = split()
    hostvars["letta1"]["ansible_host"] = "letta.example.test"
    problems = firewall_address_problems("letta1", hostvars)
    assert len(problems) == 1 and "letta1: its ansible_host 'letta.example.test'" in problems[0]
    assert "firewall_addresses" in problems[0]
    # The hosts whose rules name it cannot be computed either, and say why.
    problems = firewall_rule_problems("db1", hostvars, groups, SETTINGS)
    assert len(problems) == 1 and "letta1" in problems[0] and "firewall_addresses" in problems[0]
    hostvars["letta1"]["firewall_addresses"] = ["192.0.2.11"]
    assert firewall_address_problems("letta1", hostvars) == []
    assert firewall_rule_problems("db1", hostvars, groups, SETTINGS) == []


@pytest.mark.parametrize("addresses", [["192.0.2.11\n"], ["192.0.2.0/24"], ["letta1"], "192.0.2.11"])
def test_firewall_addresses_must_be_addresses(addresses):
    hostvars, _groups = split()
    hostvars["letta1"]["firewall_addresses"] = addresses
    problems = firewall_address_problems("letta1", hostvars)
    assert len(problems) == 1 and "firewall_addresses" in problems[0], problems


def test_the_inventory_name_is_the_address_without_ansible_host():
    assert firewall_host_addresses("192.0.2.40", {"192.0.2.40": {}}) == ["192.0.2.40"]
    with pytest.raises(FirewallInputError):
        firewall_host_addresses("db1", {"db1": {}})


def test_loopback_only_layouts():
    hostvars, groups = inventory({"a": {"ansible_host": "127.0.0.32"}, "b": {"ansible_host": "127.0.0.33"}})
    assert firewall_loopback_only(groups, hostvars)
    hostvars["b"]["ansible_host"] = "192.0.2.33"
    assert not firewall_loopback_only(groups, hostvars)
    hostvars["b"]["ansible_host"] = "b.example.test"
    assert not firewall_loopback_only(groups, hostvars)


# --- the rule set file ----------------------------------------------------------------------------------------

def render(rules):
    """roles/firewall/templates/rules.nft.j2 as the role renders it."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROOT / "roles" / "firewall" / "templates")),
                                     undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    environment.filters["comment"] = lambda text: "#\n# %s\n#" % text
    return environment.get_template("rules.nft.j2").render(
        ansible_managed="Ansible managed", inventory_hostname="db1", _firewall_rules=rules,
        _firewall_table="inet hybridstack", _firewall_counter="dropped")


def test_the_file_replaces_only_its_own_table_in_one_transaction():
    text = render(rules_of("media1", split()))
    commands = [line for line in text.splitlines() if line.startswith("table") or line.startswith("delete")]
    assert commands == ["table inet hybridstack", "delete table inet hybridstack", "table inet hybridstack {"]
    assert "flush ruleset" not in text
    assert "policy drop;" in text
    lines = [line.strip() for line in text.splitlines()]
    assert lines.index('counter name "dropped" drop comment "everything else"') > lines.index(
        'udp dport 50000-60000 accept comment "livekit media, public"')
    assert 'ip saddr { 192.0.2.13 } tcp dport 7880 accept comment "livekit from edge, livekit"' in lines


def test_a_rule_from_nobody_loads_nothing():
    text = render(rules_of("app1", scaled()))
    assert "dport 8081" not in text and "livekit agent worker health" in text


# --- status.yml's report -----------------------------------------------------------------------------------------

SS = """\
tcp   LISTEN 0      4096         0.0.0.0:22        0.0.0.0:*    users:(("sshd",pid=501,fd=3))
tcp   LISTEN 0      4096            [::]:22           [::]:*    users:(("sshd",pid=501,fd=4))
tcp   LISTEN 0      200        127.0.0.1:5432      0.0.0.0:*    users:(("postgres",pid=700,fd=6))
tcp   LISTEN 0      200      192.0.2.12:7880      0.0.0.0:*    users:(("livekit-server",pid=900,fd=8))
tcp   LISTEN 0      200      192.0.2.12:9100      0.0.0.0:*    users:(("node_exporter",pid=950,fd=3))
udp   UNCONN 0      0        192.0.2.12:50123     0.0.0.0:*    users:(("livekit-server",pid=900,fd=12))
udp   UNCONN 0      0      127.0.0.53%lo:53        0.0.0.0:*    users:(("systemd-resolve",pid=300,fd=14))
udp   UNCONN 0      0      [fe80::1]%eth0:546       [::]:*
"""


def test_ss_output_parsed():
    listeners = ss_listeners(SS)
    assert {"proto": "udp", "address": "127.0.0.53", "interface": "lo", "port": 53,
            "process": "systemd-resolve"} in listeners
    assert {"proto": "udp", "address": "fe80::1", "interface": "eth0", "port": 546, "process": ""} in listeners
    assert len(listeners) == 8
    assert ss_listeners("") == [] and ss_listeners(None) == []


def test_each_listener_is_said_to_reach_the_world_some_hosts_or_nobody():
    rules = rules_of("media1", split(), controller="203.0.113.50")
    report = firewall_reach(ss_listeners(SS), rules)
    lines = report["listeners"]
    assert "tcp 0.0.0.0:22 (sshd): some hosts: 198.51.100.0/24, the controller (203.0.113.50) " \
           "[ssh from firewall_ssh_sources, ssh from the controller]" in lines
    assert "tcp [::]:22 (sshd): some hosts: 198.51.100.0/24, the controller (203.0.113.50) " \
           "[ssh from firewall_ssh_sources, ssh from the controller]" in lines
    assert "tcp 127.0.0.1:5432 (postgres): loopback only" in lines
    assert "udp 127.0.0.53:53 (systemd-resolve): loopback only" in lines
    assert "tcp 192.0.2.12:7880 (livekit-server): some hosts: edge1 [livekit from edge, livekit]" in lines
    assert "udp 192.0.2.12:50123 (livekit-server): the world [livekit media, public]" in lines
    assert "tcp 192.0.2.12:9100 (node_exporter): nobody (no rule names this port)" in lines
    assert report["unaccounted"] == [
        "UNACCOUNTED tcp 192.0.2.12:9100 (node_exporter): listens beyond loopback and no firewall rule names its "
        "port, so the firewall drops it (open it with firewall_extra_rules, or bind it to loopback)",
        "UNACCOUNTED udp [fe80::1]:546: listens beyond loopback and no firewall rule names its port, so the firewall "
        "drops it (open it with firewall_extra_rules, or bind it to loopback)"]


def test_a_known_port_open_to_nobody_is_accounted_for():
    listeners = ss_listeners("tcp LISTEN 0 5 192.0.2.21:8081 0.0.0.0:* users:((\"python3\",pid=1,fd=3))\n")
    report = firewall_reach(listeners, rules_of("app1", scaled()))
    assert report == {"listeners": ["tcp 192.0.2.21:8081 (python3): nobody (the firewall drops it) "
                                    "[livekit agent worker health, this host only]"], "unaccounted": []}


def test_with_the_firewall_off_every_listener_beyond_loopback_reaches_the_world():
    report = firewall_reach(ss_listeners(SS), [], enabled=False)
    assert "tcp 192.0.2.12:9100 (node_exporter): the world (firewall off)" in report["listeners"]
    assert "tcp 127.0.0.1:5432 (postgres): loopback only" in report["listeners"]
    assert report["unaccounted"] == []
