"""plugins/filter/monitoring.py: the scrape targets each inventory layout implies, and that they follow the
inventory (a host added, a port changed) with nothing listed by hand."""
import pytest

from ansible_collections.hybridstack.letta_livekit.plugins.filter.firewall import firewall_rules
from ansible_collections.hybridstack.letta_livekit.plugins.filter.monitoring import (
    MonitoringInputError, monitoring_address_problems, monitoring_backup_hours, monitoring_bcrypt, monitoring_host_address,
    monitoring_livekit_secrets, monitoring_nginx_status_server, monitoring_planned_restarts, monitoring_scrape_configs,
    monitoring_target_problems, monitoring_targets)

SETTINGS = {"blackbox": "192.0.2.30:9115", "secrets_dir": "/etc/prometheus/secrets", "web_username": "admin",
            "exporters_username": "prometheus"}


def inventory(hosts, **groups):
    return hosts, dict(groups, all=list(hosts))


def local():
    """inventories/local: one host runs the whole stack, monitoring included."""
    return inventory({"stack": {"ansible_connection": "local"}},
                     postgres=["stack"], letta=["stack"], livekit=["stack"], monitoring=["stack"])


def example():
    """inventories/example with its group_vars resolved, plus a monitoring host."""
    return inventory(
        {"db1": {"ansible_host": "192.0.2.10"},
         "letta1": {"ansible_host": "192.0.2.11", "letta_host": "192.0.2.11", "letta_port": 8283},
         "media1": {"ansible_host": "192.0.2.12", "livekit_bind_addresses": ["192.0.2.12"],
                    "livekit_turn_enabled": True, "livekit_turn_tls_port": 5349, "livekit_turn_external_tls": True,
                    "livekit_turn_domain": "turn.example.com", "livekit_agents_health_host": "192.0.2.12"},
         "edge1": {"ansible_host": "192.0.2.13", "edge_letta_domain": "letta.example.com",
                   "edge_livekit_domain": "livekit.example.com", "edge_turn_domain": "turn.example.com"},
         "mon1": {"ansible_host": "192.0.2.14"}},
        postgres=["db1"], letta=["letta1"], livekit=["media1"], edge=["edge1"], monitoring=["mon1"])


def scaled(apps=("app1", "app2")):
    """inventories/scaled with its group_vars resolved: db1 runs PostgreSQL, Redis and the balancer, each app host
    a Letta replica, a LiveKit node (metrics on) and an agent worker; db1 monitors."""
    hosts = {"db1": {"ansible_host": "192.0.2.20", "letta_balancer_listen_address": "192.0.2.20",
                     "letta_balancer_port": "8283"}}
    for index, name in enumerate(apps):
        address = "192.0.2.%d" % (21 + index)
        hosts[name] = {"ansible_host": address, "letta_host": address, "letta_port": "8283",
                       "livekit_bind_addresses": [address], "livekit_prometheus_port": 6789,
                       "livekit_agents_worker_enabled": True, "livekit_agents_health_host": address}
    return inventory(hosts, postgres=["db1"], redis=["db1"], letta_balancer=["db1"], letta=list(apps),
                     livekit=list(apps), monitoring=["db1"])


def listed(layout):
    hostvars, groups = layout
    return [(item["job"], item["host"], item["target"]) for item in monitoring_targets(groups, hostvars)]


def by_job(layout):
    """The targets as (job, [(host, target), ...]), jobs in the filter's order."""
    grouped = []
    for job, host, target in listed(layout):
        if grouped and grouped[-1][0] == job:
            grouped[-1][1].append((host, target))
        else:
            grouped.append((job, [(host, target)]))
    return grouped


def test_local_layout_scrapes_loopback_only():
    assert by_job(local()) == [
        ("prometheus", [("stack", "127.0.0.1:9090")]), ("alertmanager", [("stack", "127.0.0.1:9093")]),
        ("node", [("stack", "127.0.0.1:9100")]), ("postgres", [("stack", "127.0.0.1:9187")]),
        ("pgbackrest", [("stack", "127.0.0.1:9854")]),
        ("probe_letta", [("stack", "http://127.0.0.1:8283/v1/health/")]),
        ("probe_livekit", [("stack", "http://127.0.0.1:7880/")]),
    ]


def test_example_layout_every_host_and_the_edge():
    assert by_job(example()) == [
        ("prometheus", [("mon1", "192.0.2.14:9090")]), ("alertmanager", [("mon1", "192.0.2.14:9093")]),
        ("node", [
            ("db1", "192.0.2.10:9100"), ("letta1", "192.0.2.11:9100"), ("media1", "192.0.2.12:9100"),
            ("edge1", "192.0.2.13:9100"), ("mon1", "192.0.2.14:9100")]),
        ("postgres", [("db1", "192.0.2.10:9187")]), ("pgbackrest", [("db1", "192.0.2.10:9854")]),
        ("nginx", [("edge1", "192.0.2.13:9113")]),
        ("probe_letta", [
            ("letta1", "http://192.0.2.11:8283/v1/health/"),
            ("edge1", "https://letta.example.com/v1/health/")]),
        ("probe_livekit", [("media1", "http://192.0.2.12:7880/"), ("edge1", "https://livekit.example.com/")]),
        ("probe_certificates", [
            ("edge1", "letta.example.com:443"), ("edge1", "livekit.example.com:443"),
            ("edge1", "turn.example.com:443")]),
    ]


def test_scaled_layout_replicas_balancer_nodes_and_workers():
    assert by_job(scaled()) == [
        ("prometheus", [("db1", "192.0.2.20:9090")]), ("alertmanager", [("db1", "192.0.2.20:9093")]),
        ("node", [("db1", "192.0.2.20:9100"), ("app1", "192.0.2.21:9100"), ("app2", "192.0.2.22:9100")]),
        ("postgres", [("db1", "192.0.2.20:9187")]), ("pgbackrest", [("db1", "192.0.2.20:9854")]),
        ("redis", [("db1", "192.0.2.20:9121")]), ("nginx", [("db1", "192.0.2.20:9113")]),
        ("livekit", [("app1", "192.0.2.21:6789"), ("app2", "192.0.2.22:6789")]),
        ("probe_letta", [
            ("app1", "http://192.0.2.21:8283/v1/health/"),
            ("app2", "http://192.0.2.22:8283/v1/health/"), ("db1", "http://192.0.2.20:8283/v1/health/")]),
        ("probe_livekit", [("app1", "http://192.0.2.21:7880/"), ("app2", "http://192.0.2.22:7880/")]),
        ("probe_agents", [("app1", "http://192.0.2.21:8081/"), ("app2", "http://192.0.2.22:8081/")]),
    ]


def test_a_host_added_adds_its_targets_and_nothing_else():
    before = set(listed(scaled()))
    after = set(listed(scaled(apps=("app1", "app2", "app3"))))
    assert sorted(after - before) == [
        ("livekit", "app3", "192.0.2.23:6789"),
        ("node", "app3", "192.0.2.23:9100"),
        ("probe_agents", "app3", "http://192.0.2.23:8081/"),
        ("probe_letta", "app3", "http://192.0.2.23:8283/v1/health/"),
        ("probe_livekit", "app3", "http://192.0.2.23:7880/"),
    ]
    assert before <= after


def test_ports_follow_the_owning_roles_variables():
    hostvars, groups = scaled()
    hostvars["app1"].update(letta_port=9000, exporters_node_port=19100, livekit_port=7900)
    found = set(listed((hostvars, groups)))
    assert {("probe_letta", "app1", "http://192.0.2.21:9000/v1/health/"), ("node", "app1", "192.0.2.21:19100"),
            ("probe_livekit", "app1", "http://192.0.2.21:7900/")} <= found


def test_exporters_listen_address_wins_and_ipv6_is_bracketed():
    hostvars, groups = scaled()
    hostvars["app2"]["exporters_listen_address"] = "2001:db8::22"
    assert monitoring_host_address("app2", hostvars, groups) == "2001:db8::22"
    assert ("node", "app2", "[2001:db8::22]:9100") in listed((hostvars, groups))


def test_a_host_without_an_address_is_named():
    hostvars, groups = example()
    hostvars["db1"]["ansible_host"] = "db1.internal"
    with pytest.raises(MonitoringInputError, match="db1.*exporters_listen_address"):
        monitoring_targets(groups, hostvars)


def test_backups_off_means_no_pgbackrest_target():
    hostvars, groups = example()
    hostvars["db1"]["postgresql_backup_enabled"] = False
    assert [item for item in listed((hostvars, groups)) if item[0] == "pgbackrest"] == []


def test_livekit_terminating_turn_tls_itself_gets_a_certificate_probe():
    hostvars, groups = example()
    hostvars["media1"]["livekit_turn_external_tls"] = False
    assert ("probe_certificates", "media1", "turn.example.com:5349") in listed((hostvars, groups))


def test_a_tls_repository_host_gets_its_certificate_probed():
    hostvars, groups = example()
    hostvars["letta1"]["postgresql_backup_tls_server_address"] = "192.0.2.11"
    groups["backup_repository"] = ["letta1"]
    assert ("probe_certificates", "letta1", "192.0.2.11:8432") in listed((hostvars, groups))


def test_a_target_on_another_hosts_loopback_is_a_problem():
    hostvars, groups = example()
    del hostvars["letta1"]["letta_host"]
    assert monitoring_target_problems(groups, hostvars, "mon1") == [
        "letta1: letta_host listens on loopback (127.0.0.1), which the monitoring host mon1 cannot reach; bind it "
        "to an address mon1 reaches"]
    assert monitoring_target_problems(*reversed(local()), "stack") == []
    assert monitoring_target_problems(*reversed(scaled()), "db1") == []


def test_boxes_all_on_loopback_reach_each_other():
    """molecule's layouts: the boxes share one machine's network, each on loopback, so a target on another box's
    loopback address is reachable. One host of its own among them and loopback is its own again."""
    hostvars, groups = scaled()
    for index, host in enumerate(("db1", "app1", "app2")):
        address = "127.0.0.%d" % (31 + index)
        hostvars[host].update(exporters_listen_address=address)
        for name in ("letta_host", "letta_balancer_listen_address", "livekit_agents_health_host"):
            if name in hostvars[host]:
                hostvars[host][name] = address
        if "livekit_bind_addresses" in hostvars[host]:
            hostvars[host]["livekit_bind_addresses"] = [address]
    assert monitoring_target_problems(groups, hostvars, "db1") == []
    hostvars["app2"]["exporters_listen_address"] = "192.0.2.22"
    assert monitoring_target_problems(groups, hostvars, "db1")[0].startswith(
        "app1: exporters_listen_address listens on loopback (127.0.0.32), which the monitoring host db1 cannot reach")


def test_planned_restarts_are_the_upgraded_letta_hosts_and_what_answers_for_them():
    hostvars, groups = scaled()
    assert monitoring_planned_restarts(groups, hostvars) == []
    for host in ("app1", "app2"):
        hostvars[host].update(letta_version="2.1.0", letta_running_release="2.1.0")
    assert monitoring_planned_restarts(groups, hostvars) == []
    hostvars["app2"]["letta_running_release"] = "2.0.0"
    assert monitoring_planned_restarts(groups, hostvars) == ["app2", "db1"]
    hostvars["app1"]["letta_running_release"] = ""
    assert monitoring_planned_restarts(groups, hostvars) == ["app2", "db1"]


def test_scrape_configs_probe_through_the_blackbox_exporter():
    hostvars, groups = scaled()
    configs = {config["job_name"]: config for config in monitoring_scrape_configs(groups, hostvars, SETTINGS)}
    assert list(configs) == ["prometheus", "alertmanager", "node", "postgres", "pgbackrest", "redis", "nginx",
                             "livekit", "probe_letta", "probe_livekit", "probe_agents"]
    probe = configs["probe_letta"]
    assert probe["params"] == {"module": ["http_2xx"]}
    assert probe["relabel_configs"][-1] == {"target_label": "__address__", "replacement": "192.0.2.30:9115"}
    assert probe["static_configs"][0] == {"targets": ["http://192.0.2.21:8283/v1/health/"],
                                          "labels": {"host": "app1", "via": "replica"}}
    assert configs["prometheus"]["basic_auth"] == {"username": "admin",
                                                   "password_file": "/etc/prometheus/secrets/web-password"}
    for job in ("node", "postgres", "pgbackrest", "redis", "nginx"):
        assert configs[job]["basic_auth"] == {"username": "prometheus",
                                              "password_file": "/etc/prometheus/secrets/exporters-password"}, job
    assert "basic_auth" not in configs["probe_letta"]


def test_livekit_nodes_with_basic_auth_get_a_job_each_and_a_password_file():
    hostvars, groups = scaled()
    hostvars["app2"].update(livekit_prometheus_username="prom", livekit_prometheus_password="p" * 20)
    configs = {config["job_name"]: config for config in monitoring_scrape_configs(groups, hostvars, SETTINGS)}
    assert configs["livekit"]["static_configs"] == [{"targets": ["192.0.2.21:6789"], "labels": {"host": "app1"}}]
    assert configs["livekit_app2"]["basic_auth"] == {"username": "prom",
                                                     "password_file": "/etc/prometheus/secrets/livekit-app2"}
    assert monitoring_livekit_secrets(groups, hostvars) == {"app2": "p" * 20}


def test_backup_age_comes_from_each_database_hosts_own_setting():
    hostvars, groups = scaled()
    assert monitoring_backup_hours(groups, hostvars) == [{"host": "db1", "hours": 26}]
    hostvars["db1"]["postgresql_backup_max_age_hours"] = 50
    assert monitoring_backup_hours(groups, hostvars) == [{"host": "db1", "hours": 50}]


@pytest.mark.parametrize("port", ["80\n", "abc", 70000, True])
def test_a_bad_port_is_named(port):
    hostvars, groups = scaled()
    hostvars["app1"]["letta_port"] = port
    with pytest.raises(MonitoringInputError, match="app1: letta_port must be a port number"):
        monitoring_targets(groups, hostvars)


def test_bcrypt_is_stable_per_seed_and_differs_between_seeds():
    first = monitoring_bcrypt("correct horse battery", "mon1")
    assert first.startswith("$2b$10$") and len(first) == 60
    assert monitoring_bcrypt("correct horse battery", "mon1") == first
    assert monitoring_bcrypt("correct horse battery", "mon2") != first


@pytest.mark.parametrize("address, says", [
    ("192.0.2.21\n", "exporters_listen_address must be an IP address written whole"),
    ("app1.internal", "exporters_listen_address must be an IP address written whole"),
])
def test_a_bad_listen_address_is_named(address, says):
    hostvars, groups = scaled()
    hostvars["app1"]["exporters_listen_address"] = address
    assert monitoring_address_problems("app1", hostvars, groups) == ["app1: %s (got %r)" % (says, address)]
    assert monitoring_address_problems("app2", hostvars, groups) == []


def test_the_firewall_opens_each_target_port_to_the_monitoring_hosts_only():
    hostvars, groups = scaled()
    hostvars["mon1"] = {"ansible_host": "192.0.2.30"}
    groups.update(monitoring=["mon1"], all=groups["all"] + ["mon1"])
    settings = {"ssh_sources": [], "ssh_port": 22, "extra_rules": [], "controller": ""}
    rules = [rule for rule in firewall_rules("app1", hostvars, groups, settings) if rule["service"] == "monitoring"]
    assert [(rule["port"], rule["sources4"], rule["peers"]) for rule in rules] == [
        ("6789", ["192.0.2.30"], ["mon1"]), ("7880", ["192.0.2.30"], ["mon1"]), ("8081", ["192.0.2.30"], ["mon1"]),
        ("8283", ["192.0.2.30"], ["mon1"]), ("9100", ["192.0.2.30"], ["mon1"])]
    # Its own listeners are reached from itself only.
    assert [rule["sources4"] for rule in firewall_rules("mon1", hostvars, groups, settings)
            if rule["service"] == "monitoring"] == [[], [], []]


def test_no_monitoring_host_no_monitoring_rule():
    hostvars, groups = scaled()
    del groups["monitoring"]
    settings = {"ssh_sources": [], "ssh_port": 22, "extra_rules": [], "controller": ""}
    assert not [rule for rule in firewall_rules("app1", hostvars, groups, settings) if rule["service"] == "monitoring"]


def test_one_nginx_serves_stub_status_where_the_exporter_reads_it():
    hostvars = {"db1": {"exporters_nginx_status_url": "http://127.0.0.1:8091/nginx-status"}, "edge1": {}}
    groups = {"letta_balancer": ["db1"], "edge": ["db1", "edge1"], "monitoring": ["db1"]}
    balancer = monitoring_nginx_status_server("db1", hostvars, groups, "letta_balancer")
    assert "listen 127.0.0.1:8091;" in balancer and "location = /nginx-status {" in balancer
    # One nginx on db1: the balancer's file serves it, the edge's would be a second listener on the same port.
    assert monitoring_nginx_status_server("db1", hostvars, groups, "edge") == ""
    assert "listen 127.0.0.1:8089;" in monitoring_nginx_status_server("edge1", hostvars, groups, "edge")
    assert monitoring_nginx_status_server("db1", hostvars, dict(groups, monitoring=[]), "letta_balancer") == ""
