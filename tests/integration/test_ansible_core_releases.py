"""Every ansible-core line meta/runtime.yml allows runs the collection's input checks.

The controller tools pin one ansible-core (requirements.txt); assert_all
overrides ActionBase.finalize_task_arg, which ansible-core documents as
subject to change. So each other line the bound admits gets a venv of its
newest release from this machine's package index (those lines need a newer
Python than the pinned one; Debian 13's own python3 is one), and the checks
that go through that hook run under it: assert_all's own tests and site.yml's
validation play.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import ansible
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("HYBRIDSTACK_CACHE") or Path.home() / ".cache" / "hybridstack")
INSTALLED = tuple(int(part) for part in ansible.__version__.split(".")[:2])


def allowed_lines():
    bound = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())["requires_ansible"]
    low = tuple(int(part) for part in re.search(r">=\s*(\d+)\.(\d+)", bound).groups())
    high = tuple(int(part) for part in re.search(r"<\s*(\d+)\.(\d+)", bound).groups())
    return [(low[0], minor) for minor in range(low[1], high[1])] if low[0] == high[0] else []


OTHER_LINES = [line for line in allowed_lines() if line != INSTALLED]


def newer_python():
    """A Python 3.12 or later on this machine: ansible-core 2.20 needs one."""
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    candidates = [shutil.which(name) for name in ("python3.13", "python3.12", "python3")]
    candidates += [str(path) for path in sorted(pyenv.glob("3.*/bin/python3"), reverse=True)]
    for found in candidates:
        if found:
            version = subprocess.run([found, "-c", "import sys; print(sys.version_info[:2] >= (3, 12))"],
                                     capture_output=True, text=True, check=False).stdout.strip()
            if version == "True":
                return found
    raise AssertionError("no Python 3.12 or later on this machine (Debian 13's python3 is 3.13): "
                         "the ansible-core lines after 2.19 cannot be tested")


def core_venv(line):
    venv = CACHE / f"ansible-core-{line[0]}.{line[1]}"
    if not (venv / "bin" / "ansible-playbook").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([newer_python(), "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"ansible-core~={line[0]}.{line[1]}.0"],
                       check=True, timeout=600)
    return venv


def test_the_bound_admits_the_pinned_line_and_names_the_others():
    assert INSTALLED in allowed_lines()
    assert OTHER_LINES, "only the pinned line is allowed: nothing more to test here"


@pytest.mark.parametrize("line", OTHER_LINES, ids=lambda line: "%d.%d" % line)
def test_the_input_checks_run_under_every_allowed_line(line):
    venv = core_venv(line)
    version = subprocess.run([str(venv / "bin" / "ansible-playbook"), "--version"], capture_output=True, text=True,
                             check=True).stdout
    assert f"[core {line[0]}.{line[1]}." in version, version
    env = dict(os.environ, PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    selection = ["tests/unit/test_assert_all.py", "tests/playbooks/test_site_preflight.py", "tests/playbooks/test_bad_input.py",
                 "-k", "assert_all or preflight or secrets or baseline or boolean or every_mistake"]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selection],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=1200)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert re.search(r"\b(\d+) passed", done.stdout) and " failed" not in done.stdout, done.stdout[-2000:]
