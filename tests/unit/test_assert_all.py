# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""assert_all run by ansible-playbook on the controller, the way the roles use it."""

import json
import os
import subprocess

import yaml

from conftest import COLLECTIONS, ROOT

CHECKS = [
    {"name": "the port", "that": "port_number | int >= 1024", "fail_msg": "port_number {{ port_number }} is below 1024"},
    {"name": "the guarded URI", "when": "uri is defined", "that": ["uri_parts | length == 2", "uri_parts[1] == 'c'"],
     "fail_msg": "uri's second part is {{ uri_parts[1] }}, not c"},
    # Not evaluated: its message would fail to template.
    {"name": "the absent thing", "when": "absent is defined", "that": "absent == 1", "fail_msg": "{{ absent.deeper }}"},
    {"name": "the list size", "vars": {"_count": "{{ items_given | length }}"}, "that": "_count | int == 3",
     "fail_msg": "items_given has {{ _count }} items, 3 expected"},
    {"name": "the misspelt variable", "that": "undefined_thing == 1", "fail_msg": "never shown"},
    # Passes, so its message (undefined) is never templated.
    {"name": "the passing one", "that": "true", "fail_msg": "{{ undefined_in_message }}"},
]


def run(tmp_path, checks, variables):
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        "vars": dict(variables, ansible_python_interpreter="{{ ansible_playbook_python }}"),
        "tasks": [{"name": "Check", "hybridstack.letta_livekit.assert_all": {"checks": checks}, "register": "result",
                   "ignore_errors": True},
                  {"ansible.builtin.copy": {"content": "{{ result | to_json }}", "dest": str(tmp_path / "result.json")}}],
    }]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS))
    done = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(playbook)],
                          env=env, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((tmp_path / "result.json").read_text())


def test_every_failing_check_is_named_in_order(tmp_path):
    result = run(tmp_path, CHECKS, {"port_number": 80, "uri": "a/b", "uri_parts": "{{ uri.split('/') }}",
                                    "items_given": [1, 2]})
    assert result["failed"] is True
    head, *failures = result["msg"].split("\n")
    assert head == "4 checks failed:"
    assert failures[:3] == ["- port_number 80 is below 1024", "- uri's second part is b, not c",
                            "- items_given has 2 items, 3 expected"]
    assert len(failures) == 4
    assert failures[3].startswith("- the misspelt variable: the check itself failed to evaluate")
    assert "undefined_thing" in failures[3]


def test_valid_input_passes_and_skipped_checks_are_not_counted(tmp_path):
    checks = [check for check in CHECKS if check["name"] != "the misspelt variable"]
    result = run(tmp_path, checks, {"port_number": 8080, "uri": "a/c", "uri_parts": "{{ uri.split('/') }}",
                                    "items_given": [1, 2, 3]})
    assert result.get("failed") is not True
    assert result["changed"] is False
    assert result["msg"] == "all 4 checks that apply passed"


def test_one_failure_is_the_message_itself(tmp_path):
    result = run(tmp_path, CHECKS[:1], {"port_number": 22})
    assert result["failed"] is True
    assert result["msg"] == "port_number 22 is below 1024"


def test_a_check_without_a_message_is_refused(tmp_path):
    result = run(tmp_path, [{"name": "no message", "that": "true"}], {})
    assert result["failed"] is True
    assert "check 1 needs 'that' and 'fail_msg'" in result["msg"]
