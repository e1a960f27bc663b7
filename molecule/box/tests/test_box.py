"""The box is a real Debian host: systemd is PID 1, units run, apt works."""
from stacktest import VARS


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
    result = host.run("apt-get install -y -q sl")
    assert result.rc == 0, result.stderr
    assert host.package("sl").is_installed
    assert host.file("/usr/games/sl").mode & 0o111
