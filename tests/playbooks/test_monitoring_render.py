"""The monitoring role's files rendered for the scaled layout with a monitoring host, on the controller only (a
play of debug tasks contacts no host): prometheus.yml lists exactly the inventory's targets, the alert rules carry
the thresholds, no secret is in a file that is not a secret file."""
import os
import subprocess

import yaml
from sitecheck import ROOT

SCALED = """
all:
  vars: {ansible_host: 127.0.0.1, ansible_port: 1, exporters_web_password: Exporters-password-of-the-test}
  children:
    postgres: {hosts: {db1: {exporters_listen_address: 192.0.2.20}}}
    redis: {hosts: {db1: {}}}
    letta_balancer: {hosts: {db1: {letta_balancer_listen_address: 192.0.2.20}}}
    letta:
      hosts:
        app1: {exporters_listen_address: 192.0.2.21, letta_host: 192.0.2.21}
        app2: {exporters_listen_address: 192.0.2.22, letta_host: 192.0.2.22}
    livekit:
      hosts:
        app1: {livekit_bind_addresses: [192.0.2.21], livekit_prometheus_port: 6789, livekit_prometheus_username: prom,
               livekit_prometheus_password: Livekit-metrics-password}
        app2: {livekit_bind_addresses: [192.0.2.22]}
    monitoring:
      hosts:
        mon1: {exporters_listen_address: 192.0.2.30, monitoring_web_password: Web-password-of-the-test,
               monitoring_webhook_url: "https://hooks.example.test/alerts", monitoring_webhook_password: Webhook-token-test,
               monitoring_disk_used_percent: 90}
"""

PLAY = """
- hosts: mon1
  gather_facts: false
  vars_files: [{role}/vars/main.yml]
  tasks:
    - ansible.builtin.copy:
        dest: "{out}/{{{{ item }}}}"
        content: "{{{{ lookup('ansible.builtin.template', '{role}/templates/' ~ item ~ '.j2') }}}}"
        mode: "0600"
      delegate_to: localhost
      loop: [prometheus.yml, alerts.yml, alertmanager.yml, web.yml, blackbox.yml, prometheus.default]
    - ansible.builtin.copy:
        dest: "{out}/secrets.yml"
        content: "{{{{ _monitoring_secret_files | to_nice_yaml }}}}"
        mode: "0600"
      delegate_to: localhost
"""


def render(tmp_path):
    (tmp_path / "hosts.yml").write_text(SCALED)
    # The role's defaults below the hosts' own variables, as a role's defaults are.
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text((ROOT / "roles" / "monitoring" / "defaults" / "main.yml").read_text())
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "play.yml").write_text(PLAY.format(role=ROOT / "roles" / "monitoring", out=out))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"))
    result = subprocess.run(["ansible-playbook", "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "play.yml")],
                            env=env, capture_output=True, text=True, check=False, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    return {path.name: path.read_text() for path in out.iterdir()}


def test_rendered_files(tmp_path):
    files = render(tmp_path)
    prometheus = yaml.safe_load(files["prometheus.yml"])
    targets = {(config["job_name"], target) for config in prometheus["scrape_configs"]
               for static in config["static_configs"] for target in static["targets"]}
    assert targets == {
        ("prometheus", "192.0.2.30:9090"), ("alertmanager", "192.0.2.30:9093"),
        ("node", "192.0.2.20:9100"), ("node", "192.0.2.21:9100"), ("node", "192.0.2.22:9100"),
        ("node", "192.0.2.30:9100"), ("postgres", "192.0.2.20:9187"), ("pgbackrest", "192.0.2.20:9854"),
        ("redis", "192.0.2.20:9121"), ("nginx", "192.0.2.20:9113"), ("livekit_app1", "192.0.2.21:6789"),
        ("probe_letta", "http://192.0.2.21:8283/v1/health/"), ("probe_letta", "http://192.0.2.22:8283/v1/health/"),
        ("probe_letta", "http://192.0.2.20:8283/v1/health/"), ("probe_livekit", "http://192.0.2.21:7880/"),
        ("probe_livekit", "http://192.0.2.22:7880/")}
    assert prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["192.0.2.30:9093"]
    rules = yaml.safe_load(files["alerts.yml"])["groups"][0]["rules"]
    by_name = {rule["alert"]: rule for rule in rules}
    assert set(by_name) == {"ServiceDown", "LettaReplicaUnhealthy", "LettaEndpointUnhealthy", "LiveKitNodeGone",
                            "LiveKitEndpointUnhealthy", "AgentWorkerGone", "BackupTooOld", "BackupFailed",
                            "WalArchivingFailing", "CertificateExpiring", "DiskAlmostFull",
                            "PostgresConnectionsNearLimit"}
    assert by_name["DiskAlmostFull"]["expr"].endswith("> 90")
    assert by_name["BackupTooOld"]["expr"].endswith("{host=\"db1\"}) > 93600")
    assert "{{ $labels.host }}" in by_name["LettaReplicaUnhealthy"]["annotations"]["summary"]
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert all("| `%s` |" % name in operations for name in by_name)
    alertmanager = yaml.safe_load(files["alertmanager.yml"])
    assert alertmanager["receivers"][1]["webhook_configs"][0]["http_config"]["authorization"]["credentials_file"] == \
        "/etc/prometheus/secrets/webhook-token"
    assert yaml.safe_load(files["web.yml"])["basic_auth_users"]["admin"].startswith("$2b$")
    secrets = {item["path"]: item["content"] for item in yaml.safe_load(files["secrets.yml"])}
    assert secrets == {"/etc/prometheus/secrets/web-password": "Web-password-of-the-test",
                       "/etc/prometheus/secrets/exporters-password": "Exporters-password-of-the-test",
                       "/etc/prometheus/secrets/webhook-token": "Webhook-token-test",
                       "/etc/prometheus/secrets/livekit-app1": "Livekit-metrics-password"}
    for name, text in files.items():
        if name != "secrets.yml":
            for secret in secrets.values():
                assert secret not in text, name
    assert "--web.listen-address=192.0.2.30:9090" in files["prometheus.default"]
    assert {config["job_name"]: config.get("basic_auth", {}).get("password_file") for config in prometheus["scrape_configs"]
            if config["job_name"] in ("node", "postgres", "pgbackrest", "redis", "nginx")} == dict.fromkeys(
        ("node", "postgres", "pgbackrest", "redis", "nginx"), "/etc/prometheus/secrets/exporters-password")
