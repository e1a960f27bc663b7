"""The collection as users get it: built, installed from the tarball, run by FQCN."""
import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FQCN = "hybridstack.letta_livekit"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    build_dir = tmp_path_factory.mktemp("build")
    subprocess.run(["ansible-galaxy", "collection", "build", "--output-path", str(build_dir), str(ROOT)],
                   check=True, capture_output=True, text=True)
    tarballs = list(build_dir.glob("hybridstack-letta_livekit-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    target = tmp_path_factory.mktemp("collections")
    subprocess.run(["ansible-galaxy", "collection", "install", "--offline", "--no-deps", "--force", "-p", str(target), str(tarballs[0])],
                   check=True, capture_output=True, text=True)
    # The installed tarball plus its pinned dependencies; not this checkout,
    # not the project's ansible.cfg.
    deps = tmp_path_factory.mktemp("deps") / "ansible_collections"
    deps.mkdir()
    for namespace in ("ansible", "community"):
        (deps / namespace).symlink_to(ROOT / ".collections" / "ansible_collections" / namespace)
    config = target / "ansible.cfg"
    config.write_text("[defaults]\n")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=f"{target}:{deps.parent}", ANSIBLE_CONFIG=str(config))
    path = target / "ansible_collections" / "hybridstack" / "letta_livekit"
    assert (path / "MANIFEST.json").is_file()
    return {"root": target, "env": env, "tarball": tarballs[0]}


def test_tarball_leaves_out_tests_and_caches(installed):
    listing = subprocess.run(["tar", "-tzf", str(installed["tarball"])], check=True, capture_output=True, text=True).stdout
    assert "plugins/modules/letta_message_patch.py" in listing
    for unwanted in ("molecule/", "tests/", ".venv/", ".collections/", "scripts/"):
        assert f"\n{unwanted}" not in "\n" + listing, unwanted
    assert "\nroles/letta/files/locks/" in "\n" + listing


def test_installed_module_is_documented(installed):
    result = subprocess.run(["ansible-doc", "--json", f"{FQCN}.letta_message_patch"], env=installed["env"],
                            check=True, capture_output=True, text=True)
    doc = json.loads(result.stdout)[f"{FQCN}.letta_message_patch"]["doc"]
    assert doc["collection"] == FQCN
    assert "state" in doc["options"]


def test_installed_module_runs_by_fqcn(installed, tmp_path):
    # A venv without Letta: the module must run from the installed tarball and
    # give its own clear error naming what it found.
    venv = tmp_path / "venv"
    subprocess.run(["python3", "-m", "venv", "--without-pip", str(venv)], check=True)
    result = subprocess.run(["ansible", "localhost", "-m", f"{FQCN}.letta_message_patch", "-a", f"venv={venv}"],
                            env=installed["env"], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert str(venv) in result.stdout
    assert "letta" in result.stdout.lower()


def test_installed_role_validates_its_arguments(installed):
    # Runs a role from the tarball; its argument spec must reject a bad port before any task.
    playbook = installed["root"] / "play.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  roles:\n"
        f"    - role: {FQCN}.livekit\n      vars:\n        livekit_port: not-a-port\n")
    result = subprocess.run(["ansible-playbook", str(playbook)], env=installed["env"],
                            capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "livekit_port" in result.stdout
    assert "argument" in result.stdout.lower()
