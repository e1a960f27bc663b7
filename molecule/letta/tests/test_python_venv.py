"""python_venv on its own: uv pip sync semantics, changed only when something
was installed or removed, check mode, the pip fallback, separate venvs."""
import pytest
from stacktest import run_playbook


def probe(path, lock, installer="uv", check=False):
    """One run of venv_probe.yml: python_venv's result and the recap."""
    run = run_playbook("venv_probe.yml", *(["--check"] if check else []), json_output=True,
                       extra_vars=[{"probe_venv_path": path, "probe_lock": lock, "probe_installer": installer}])
    assert run.rc == 0, run.tail(3000)
    return run.task_results("Show the result")[0]["python_venv_result"], run.recap


@pytest.fixture(scope="module")
def uv_venv(host):
    host.run("rm -rf /opt/probe-uv /opt/probe-uv.lock.txt")
    yield "/opt/probe-uv"
    host.run("rm -rf /opt/probe-uv /opt/probe-uv.lock.txt")


def test_check_mode_on_a_new_venv_changes_nothing(host, uv_venv):
    result, _recap = probe(uv_venv, "probe-two.txt", check=True)
    assert result["changed"] is True
    assert result["packages"] == {}
    assert not host.file(uv_venv).exists


def test_uv_builds_then_audits_then_removes(host, uv_venv):
    first, recap = probe(uv_venv, "probe-two.txt")
    assert first["changed"] is True and recap["changed"] > 0
    assert first["path"] == uv_venv and first["python"] == uv_venv + "/bin/python"
    assert first["packages"]["idna"] == "3.10" and first["packages"]["six"] == "1.17.0"
    # Nothing from Letta's venv leaks in: the probe imports its own copy only.
    assert "letta" not in first["packages"] and "fastapi" not in first["packages"]
    located = host.run(f"{uv_venv}/bin/python -c 'import six; print(six.__file__)'")
    assert located.stdout.startswith(uv_venv + "/lib/"), located.stdout
    assert host.run(f"{uv_venv}/bin/python -c 'import fastapi'").rc != 0

    again, recap = probe(uv_venv, "probe-two.txt")
    assert again["changed"] is False and recap["changed"] == 0

    smaller, recap = probe(uv_venv, "probe-one.txt")
    assert smaller["changed"] is True and recap["changed"] > 0
    assert "six" not in smaller["packages"] and smaller["packages"]["idna"] == "3.10"
    assert host.run(f"{uv_venv}/bin/python -c 'import six'").rc != 0
    assert host.file(uv_venv + ".lock.txt").content_string.strip().endswith("idna==3.10")


def test_pip_fallback_installs_and_is_idempotent(host):
    host.run("rm -rf /opt/probe-pip /opt/probe-pip.lock.txt")
    try:
        first, recap = probe("/opt/probe-pip", "probe-two.txt", installer="pip")
        assert first["changed"] is True
        assert first["packages"]["six"] == "1.17.0"
        again, recap = probe("/opt/probe-pip", "probe-two.txt", installer="pip")
        assert again["changed"] is False and recap["changed"] == 0
    finally:
        host.run("rm -rf /opt/probe-pip /opt/probe-pip.lock.txt")


def test_uv_is_installed_only_from_a_wheel_with_a_known_hash(host):
    requirement = host.file("/opt/python-venv-tools/uv-requirement.txt").content_string
    assert requirement.startswith("uv==") and requirement.count("--hash=sha256:") >= 2
    # The tools venv has no pip of its own: the system's pip installs into it.
    assert not host.file("/opt/python-venv-tools/bin/pip").exists
    # The same install with one wrong hash is refused by pip: the hashes are enforced.
    wrong = "uv==" + requirement.split("==", 1)[1].split()[0] + " --hash=sha256:" + "0" * 64
    result = host.run(f"printf '%s\\n' '{wrong}' > /root/uv-wrong.txt && python3 -m pip --python /opt/python-venv-tools/bin/python "
                      "install --disable-pip-version-check --require-hashes --only-binary :all: --dry-run --ignore-installed "
                      "-r /root/uv-wrong.txt; rc=$?; rm -f /root/uv-wrong.txt; exit $rc")
    assert result.rc != 0
    assert "DO NOT MATCH THE HASHES" in result.stderr + result.stdout


def background(path, lock):
    """One run of venv_background.yml: start the sync, other work, the call that waits."""
    return run_playbook("venv_background.yml", json_output=True,
                        extra_vars=[{"probe_venv_path": path, "probe_lock": lock}])


@pytest.fixture
def background_venv(host):
    host.run("rm -rf /opt/probe-background /opt/probe-background.lock.txt")
    yield "/opt/probe-background"
    host.run("rm -rf /opt/probe-background /opt/probe-background.lock.txt")


def test_a_background_build_is_finished_by_the_next_call(host, background_venv):
    # Without uv, as on a new host: the job makes the tools venv and installs uv too.
    host.run("rm -rf /opt/python-venv-tools")
    run = background(background_venv, "probe-two.txt")
    assert run.rc == 0, run.tail(3000)
    job = run.task_results("Start building the venv in the background")[0]["ansible_job_id"]
    for step in ("Create the tools venv for uv", "Install uv into the tools venv, checked against those hashes",
                 "Create the venv", "Make the venv match the lock"):
        results = run.task_results(step)
        assert results and all(r.get("skipped") for r in results), step
    assert host.file("/opt/python-venv-tools/bin/uv").is_file
    assert not host.file("/opt/python-venv-tools/bin/pip").exists
    # The starting call returns at once and leaves the result to the call that waits.
    assert run.task_results("Show what the start left")[0]["msg"]["result_set"] is False
    waited = run.task_results("Wait for the background build to finish")[0]
    assert waited["finished"] == 1 and waited["changed"] is True, waited
    result = run.task_results("Show the result")[0]["python_venv_result"]
    assert result["changed"] is True and result["packages"] == {"idna": "3.10", "six": "1.17.0"}
    assert not host.file(f"/root/.ansible_async/{job}").exists
    # It left the sync record: a plain call finds the venv as locked.
    again, recap = probe(background_venv, "probe-two.txt")
    assert again["changed"] is False and recap["changed"] == 0


def test_a_failed_background_build_fails_the_call_that_waits(host, background_venv):
    run = background(background_venv, "probe-missing.txt")
    assert run.rc != 0
    failed = run.task_results("Wait for the background build to finish")[0]
    assert failed.get("failed") is True and "idna" in failed["stderr"], failed
    assert run.task_results("Show the result") == []
