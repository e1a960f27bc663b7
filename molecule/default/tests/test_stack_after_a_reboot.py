"""A reboot of the converged box: every service of the stack comes back
healthy by itself.

Runs last of the verify (after test_secrets.py): the reboot ends every
process, so nothing after it may rely on what ran before.
"""
from stacktest import STACK_UNITS, VARS, Letta, LettaDatabase, boot_id, restart_box, wait_for


def test_the_stack_comes_back_healthy_after_a_reboot(host):
    letta = Letta(VARS["letta_port"])
    version = letta.wait_healthy()["version"]
    assert version
    booted_before = boot_id(host)

    said = restart_box()

    # An orderly poweroff within the script's grace time: no KILL, which would
    # be a power cut for PostgreSQL.
    assert "killed" not in said, said

    assert boot_id(host) != booted_before

    # No playbook, no systemctl: only what the boot itself started.
    assert letta.wait_healthy() == {"version": version, "status": "ok"}
    database = LettaDatabase(VARS["postgresql_port"], VARS["postgresql_db_password"])
    assert database.query("SELECT count(*) FROM alembic_version") == [(1,)]
    wait_for(f"http://127.0.0.1:{VARS['livekit_port']}/")
    wait_for(f"http://127.0.0.1:{VARS['livekit_agents_health_port']}/")
    for unit in ["postgresql.service", *STACK_UNITS]:
        assert host.run(f"systemctl is-active {unit}").stdout.strip() == "active", unit
    assert host.run("systemctl --failed --no-legend --plain").stdout.strip() == ""
