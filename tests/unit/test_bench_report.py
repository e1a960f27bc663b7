# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The benchmark's report parsers, on output shaped as profile_tasks and
plain-stack.sh print it."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "bench"))

import run  # noqa: E402

PLAYBOOK_OUTPUT = """\
PLAY [Validate the input] ******************************************************

TASK [Check it] ****************************************************************
Friday 27 November 2026  00:55:51 +0000 (0:00:00.014)       0:00:00.014 *******
ok: [stack]

PLAY [Install the packages] ****************************************************

TASK [Install them] ************************************************************
Friday 27 November 2026  00:55:57 +0000 (0:00:06.188)       0:00:06.202 *******
changed: [stack]

PLAY [Nothing here] ************************************************************
skipping: no hosts matched

PLAY [Start the services] ******************************************************

TASK [Start them] **************************************************************
Friday 27 November 2026  00:56:39 +0000 (0:00:42.015)       0:00:48.217 *******
changed: [stack]

PLAY RECAP *********************************************************************
stack                      : ok=3    changed=2    unreachable=0    failed=0

TASKS RECAP ********************************************************************
Friday 27 November 2026  00:56:41 +0000 (0:00:02.283)       0:00:50.500 *******
===============================================================================
Install them ------------------------------------------------------------ 42.02s
"""


def test_profile_by_play_splits_the_run_at_each_plays_first_task():
    assert run.profile_by_play(PLAYBOOK_OUTPUT, elapsed=52.0) == [
        {"part": "start-up, before the first task", "s": 1.5},
        {"part": "Validate the input", "s": 6.2},
        {"part": "Install the packages", "s": 42.0},
        {"part": "Start the services", "s": 2.3},
    ]


def test_script_phases_end_at_the_next_mark():
    output = "phase packages 100.25\nnoise\nphase postgresql 133.5\nphase end 140.0\nplain-stack: healthy\n"
    assert run.script_phases(output) == [{"part": "packages", "s": 33.2}, {"part": "postgresql", "s": 6.5}]


def test_the_pairs_without_apt_leave_out_each_sides_package_install():
    assert run.outside_packages_pairs([90.0, 80.0], [30.0, 30.0], [60.0, 70.0], [30.0, 40.0]) == [2.0, 1.67]


def test_the_package_play_and_phase_the_report_leaves_out_exist():
    site = (pathlib.Path(run.ROOT) / "playbooks" / "site.yml").read_text()
    assert f"- name: {run.PACKAGES_PLAY}\n" in site
    script = (pathlib.Path(run.HERE) / "plain-stack.sh").read_text()
    assert f"phase {run.PACKAGES_PHASE}\n" in script
