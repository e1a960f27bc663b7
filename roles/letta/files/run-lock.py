"""The run lock of one database: taken by the run that changes Letta's release
or schema, so a second run refuses before it stops anything.

  run-lock.py take LOCK_FILE RUN_JSON   -> {"taken": bool, "held": {...}, "took_over": {...}}
  run-lock.py release LOCK_FILE RUN_ID  -> {"released": bool}

RUN_JSON: {"run": id, "controller": name, "pid": n, "started": text, "since": epoch,
"stale": [run ids the caller found dead]}. A lock held by a run the caller
found dead (same controller, its ansible-playbook process gone) is taken over.
Prints one JSON document; exits 0 unless the file cannot be handled.
"""
import fcntl
import json
import os
import sys


def read(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def write(path, content):
    """Replace the file in one rename: a reader sees the old lock or the new one."""
    temporary = "%s.%d" % (path, os.getpid())
    descriptor = os.open(temporary, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(content, handle)
    os.replace(temporary, path)


def guarded(path, action):
    """Every take and release of one lock runs alone (the runs of one database all reach this host)."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path + ".guard", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        return action()


def take(path, me):
    def action():
        held = read(path)
        mine = {key: value for key, value in me.items() if key != "stale"}
        if not held:
            write(path, mine)
            return {"taken": True}
        if held.get("run") == me["run"]:
            return {"taken": True}
        if held.get("run") in me.get("stale", []):
            write(path, mine)
            return {"taken": True, "took_over": held}
        return {"taken": False, "held": held}
    return guarded(path, action)


def release(path, run):
    def action():
        held = read(path)
        if held and held.get("run") == run:
            os.unlink(path)
            return {"released": True}
        return {"released": False}
    return guarded(path, action)


def main():
    command, path, argument = sys.argv[1:4]
    if command == "take":
        result = take(path, json.loads(argument))
    elif command == "release":
        result = release(path, argument)
    elif command == "read":
        result = {"held": read(path) or {}}
    else:
        raise SystemExit("run-lock.py: unknown command %s" % command)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
