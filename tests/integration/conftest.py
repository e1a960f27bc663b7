# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Integration tests' fixtures: real Letta releases from the package index, real venvs, a
real PostgreSQL cluster, and a harness that runs the module's main()."""

import collections
import fcntl
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / ".collections"
if not (COLLECTIONS / "ansible_collections" / "hybridstack" / "letta_livekit").exists():
    raise RuntimeError("%s does not make this checkout importable; run 'make tools'" % COLLECTIONS)
sys.path.insert(0, str(COLLECTIONS))

from ansible.module_utils import basic  # noqa: E402
from ansible.module_utils.testing import patch_module_args  # noqa: E402
from ansible_collections.hybridstack.letta_livekit.plugins.module_utils.letta_message_patch import CHECKED_RELEASES  # noqa: E402
from ansible_collections.hybridstack.letta_livekit.plugins.modules import letta_message_patch  # noqa: E402

SUPPORTED = list(CHECKED_RELEASES)
CACHE = Path(os.environ.get("HYBRIDSTACK_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hybridstack")
WHEELS = CACHE / "letta-wheels"
MESSAGE = "letta/orm/message.py"


def wheel_of(version):
    """The release's wheel from PyPI, downloaded once into the cache."""
    pattern = str(WHEELS / ("letta-%s-py3-none-any.whl" % version))
    if not glob.glob(pattern):
        WHEELS.mkdir(parents=True, exist_ok=True)
        # pytest-xdist workers (and other checkouts sharing the cache) may want
        # the same wheel at once: one downloads, the others wait and find it.
        with open(WHEELS / ".download.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not glob.glob(pattern):
                subprocess.run(
                    [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                     "-d", str(WHEELS), "letta==%s" % version],
                    check=True,
                )
    found = glob.glob(pattern)
    assert found, "pip download letta==%s left no wheel in %s" % (version, WHEELS)
    return found[0]


_RELEASES = {}
Release = collections.namedtuple("Release", "version text")
LettaVenv = collections.namedtuple("LettaVenv", "venv version message")


def release_files(version):
    """{archive name: bytes} of the files a fake install of the release needs."""
    if version not in _RELEASES:
        with zipfile.ZipFile(wheel_of(version)) as wheel:
            dist_info = "letta-%s.dist-info/" % version
            wanted = [n for n in wheel.namelist()
                      if n in (MESSAGE, "letta/__init__.py", "letta/orm/__init__.py") or n.startswith(dist_info)]
            _RELEASES[version] = {name: wheel.read(name) for name in wanted}
        assert MESSAGE in _RELEASES[version], "letta %s wheel has no %s" % (version, MESSAGE)
    return _RELEASES[version]


@pytest.fixture(params=SUPPORTED, scope="session")
def release(request):
    """Version and original message.py text of every supported release."""
    return Release(request.param, release_files(request.param)[MESSAGE].decode("utf-8"))


def make_venv(where, python=None):
    """A real venv (no pip: only its interpreter and site-packages matter)."""
    subprocess.run([python or sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    site = subprocess.run(
        [str(where / "bin" / "python"), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    return Path(site)


def install_release(site, version, files=None):
    """Lay the release's files out as pip would; return message.py's path."""
    for name, data in (files or release_files(version)).items():
        target = site / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return site / MESSAGE


@pytest.fixture
def letta_venv(tmp_path, release):
    """A venv with the release installed, and the path of its message.py."""
    venv = tmp_path / "venv"
    site = make_venv(venv)
    return LettaVenv(venv, release.version, install_release(site, release.version))


class ModuleExit(Exception):
    def __init__(self, result):
        super().__init__(result.get("msg"))
        self.result = result


class ModuleFail(ModuleExit):
    pass


@pytest.fixture
def run_module(monkeypatch):
    """Run main() with the given arguments; return its result, raise ModuleFail on failure."""

    def exit_json(self, **kwargs):
        kwargs.setdefault("changed", False)
        raise ModuleExit(kwargs)

    def fail_json(self, msg, **kwargs):
        kwargs["failed"] = True
        kwargs["msg"] = msg
        raise ModuleFail(kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)

    def run(check_mode=False, diff=False, **args):
        args["_ansible_check_mode"] = check_mode
        args["_ansible_diff"] = diff
        with patch_module_args(args):
            try:
                letta_message_patch.main()
            except ModuleFail:
                raise
            except ModuleExit as done:
                return done.result
        raise AssertionError("main() returned without exit_json or fail_json")

    return run


# ---------------------------------------------------------------- PostgreSQL

def _pg_bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        pytest.fail("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb): run 'make host-deps'",
                    pytrace=False)
    return os.path.dirname(found[-1])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_unprivileged(argv):
    """initdb refuses root: run the server tools as nobody when we are root."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"] + argv


@pytest.fixture(scope="session")
def postgres():
    """A throwaway cluster on a unix socket in a temp dir; yields psycopg2 connect kwargs."""
    import psycopg2

    bindir = _pg_bindir()
    base = Path(tempfile.mkdtemp(prefix="letta-patch-pg-"))
    data, sockets = base / "data", base / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        for p in (base, sockets):
            shutil.chown(p, "nobody", "nogroup")
    port = _free_port()
    user = "nobody" if os.geteuid() == 0 else os.environ.get("USER") or "postgres"
    try:
        subprocess.run(_as_unprivileged([os.path.join(bindir, "initdb"), "-D", str(data), "-U", user,
                                         "--auth=trust", "--no-sync", "-E", "UTF8"]),
                       check=True, capture_output=True)
        # No TCP listener: boxes and other helpers own the loopback ports.
        subprocess.run(_as_unprivileged([os.path.join(bindir, "pg_ctl"), "-D", str(data), "-w", "-t", "60",
                                         "-l", str(base / "server.log"),
                                         "-o", "-c listen_addresses='' -c unix_socket_directories=%s -p %d -c fsync=off"
                                         % (sockets, port), "start"]),
                       check=True, capture_output=True)
        params = dict(host=str(sockets), port=port, user=user, dbname="postgres")
        deadline = time.time() + 30
        while True:
            try:
                psycopg2.connect(**params).close()
                break
            except psycopg2.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        yield params
    except subprocess.CalledProcessError as exc:
        log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
        pytest.fail("could not start a throwaway PostgreSQL: %s\n%s\n%s" % (exc, exc.stderr, log), pytrace=False)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_unprivileged([os.path.join(bindir, "pg_ctl"), "-D", str(data), "-m", "immediate",
                                             "stop"]), capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


def pytest_report_header(config):
    return "letta releases under test: %s (wheels cached in %s)" % (", ".join(SUPPORTED), WHEELS)
