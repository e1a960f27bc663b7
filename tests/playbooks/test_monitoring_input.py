"""The monitoring and exporters roles' input is checked in site.yml's validation pass, naming the variable, before
any host is contacted (every host points at a loopback port where nothing listens; see sitecheck.py)."""
from sitecheck import VALID, assert_refused_untouched, inventory, one_box, run_site

MONITORING = {"monitoring_web_password": "Web-password-of-the-test", "exporters_web_password": "Exporters-password-of-the-test"}


def box_with_monitoring(tmp_path, **overrides):
    """The single-host stack, also its own monitoring host."""
    host_vars = {name: value for name, value in dict(VALID, **dict(MONITORING, **overrides)).items() if value is not None}
    return inventory(tmp_path, {"box1": (["postgres", "letta", "livekit", "monitoring"], host_vars)})


def test_valid_monitoring_input_passes_validation(tmp_path):
    rc, out = run_site(box_with_monitoring(tmp_path, monitoring_webhook_url="https://hooks.example.test/alerts",
                                           monitoring_webhook_password="Token-of-the-test",
                                           livekit_prometheus_port=6789))
    assert "UNREACHABLE" in out or "unreachable=1" in out, out


def test_no_monitoring_host_needs_no_monitoring_input(tmp_path):
    rc, out = run_site(one_box(tmp_path))
    assert "UNREACHABLE" in out or "unreachable=1" in out, out
    assert "exporters:" not in out and "monitoring:" not in out, out


def test_every_bad_monitoring_input_is_named_at_once(tmp_path):
    rc, out = run_site(box_with_monitoring(tmp_path, monitoring_web_password="short", monitoring_alert_for="5 minutes",
                                           monitoring_disk_used_percent=100, monitoring_prometheus_port=9093,
                                           monitoring_email_to="ops@example.test", monitoring_email_smarthost="mail",
                                           monitoring_silence_hosts=["letta9"]))
    assert_refused_untouched(rc, out, "monitoring_web_password", "monitoring_alert_for", "monitoring_disk_used_percent",
                             "monitoring_alertmanager_port", "monitoring_email_smarthost", "'letta9'")


def test_a_trailing_newline_is_refused(tmp_path):
    rc, out = run_site(box_with_monitoring(tmp_path, monitoring_webhook_url="https://hooks.example.test/alerts\n"))
    assert_refused_untouched(rc, out, "monitoring_webhook_url")
    rc, out = run_site(box_with_monitoring(tmp_path, exporters_listen_address="127.0.0.1\n"))
    assert_refused_untouched(rc, out, "exporters_listen_address")


def test_a_bad_livekit_metrics_login_is_refused(tmp_path):
    rc, out = run_site(box_with_monitoring(tmp_path, livekit_prometheus_port=6789, livekit_prometheus_username="prom"))
    assert_refused_untouched(rc, out, "livekit_prometheus_password")


def test_a_target_on_another_hosts_loopback_is_refused(tmp_path):
    path = inventory(tmp_path, {
        "db1": (["postgres"], dict(VALID, ansible_host="127.0.0.1", exporters_listen_address="192.0.2.10",
                                   exporters_web_password=MONITORING["exporters_web_password"])),
        "app1": (["letta", "livekit"], dict(VALID, exporters_listen_address="192.0.2.11",
                                            exporters_web_password=MONITORING["exporters_web_password"])),
        "mon1": (["monitoring"], dict(MONITORING, exporters_listen_address="192.0.2.12")),
    })
    rc, out = run_site(path)
    assert_refused_untouched(rc, out, "app1: letta_host listens on loopback")


def test_the_exporters_password_is_required_whole_and_the_same_on_every_host(tmp_path):
    for bad in (None, "Exporters-password-of-the-test\n", "short"):
        rc, out = run_site(box_with_monitoring(tmp_path, exporters_web_password=bad))
        assert_refused_untouched(rc, out, "exporters_web_password")
    path = inventory(tmp_path, {
        "db1": (["postgres", "letta", "livekit"], dict(VALID, exporters_web_password="Another-exporters-password")),
        "mon1": (["monitoring"], dict(MONITORING, ansible_host="127.0.0.2")),
    })
    rc, out = run_site(path)
    assert_refused_untouched(rc, out, "exporters_web_password")
    assert "the same on every host as on the monitoring host (mon1)" in " ".join(out.split()), out
