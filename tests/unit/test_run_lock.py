"""roles/letta/files/run-lock.py: one run holds a database's lock; a dead run's lock is taken over; only the
holder releases it; concurrent takers get exactly one winner."""
import json
import pathlib
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "roles" / "letta" / "files" / "run-lock.py"


def lock(*args):
    result = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def run(name, stale=()):
    return json.dumps({"run": name, "controller": "c", "pid": 1, "started": "s", "since": 0, "upgrade": "a to b",
                       "stale": list(stale)})


def test_a_second_run_is_refused_and_told_who_holds_it(tmp_path):
    path = str(tmp_path / "locks" / "db.lock")
    assert lock("take", path, run("one")) == {"taken": True}
    assert lock("take", path, run("one")) == {"taken": True}
    refused = lock("take", path, run("two"))
    assert refused["taken"] is False and refused["held"]["run"] == "one"
    assert oct((tmp_path / "locks" / "db.lock").stat().st_mode & 0o777) == "0o600"


def test_only_the_holder_releases(tmp_path):
    path = str(tmp_path / "db.lock")
    lock("take", path, run("one"))
    assert lock("release", path, "two") == {"released": False}
    assert lock("read", path, "-")["held"]["run"] == "one"
    assert lock("release", path, "one") == {"released": True}
    assert lock("read", path, "-") == {"held": {}}


def test_a_dead_runs_lock_is_taken_over(tmp_path):
    path = str(tmp_path / "db.lock")
    lock("take", path, run("dead"))
    taken = lock("take", path, run("next", stale=["dead"]))
    assert taken["taken"] is True and taken["took_over"]["run"] == "dead"
    # Stale is about one holder: the new holder is not stale for a third run.
    assert lock("take", path, run("third", stale=["dead"]))["taken"] is False


def test_concurrent_takers_over_a_dead_run_have_one_winner(tmp_path):
    path = str(tmp_path / "db.lock")
    lock("take", path, run("dead"))
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: lock("take", path, run("run%d" % n, stale=["dead"])), range(8)))
    assert sum(result["taken"] for result in results) == 1, results
