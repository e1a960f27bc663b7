#!/usr/bin/env python
"""Benchmarks that are reported, never asserted in the test suite.

  box-boot   create a box from the cached rootfs until `systemctl
             is-system-running` says running, then destroy it (target 15 s).
  stack      the whole stack (inventories/local's layout) on fresh boxes with
             warm download caches: fresh converge, no-op re-run, check mode on
             the converged box, playbooks/patch.yml on the patched box.
  script     the same installs done by a plain shell script (plain-stack.sh)
             on identical fresh boxes: the yardstick for the fresh converge.

Each figure is the minimum and median of --runs runs. The report is printed
as a table and written as JSON under docs/bench-results/ (or --output);
`--compare OLD.json NEW.json` prints two reports side by side.
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BOX = ROOT / "scripts" / "box"
ARCHIVE = ROOT / "scripts" / "livekit-archive"
CACHE = pathlib.Path(os.environ.get("HYBRIDSTACK_CACHE")
                     or pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "hybridstack")
VALUES = HERE / "stack-values.yml"
LIVEKIT_VERSION = "1.13.5"
# The download caches boxes share, as `make up` binds them (scripts/demo).
BOX_CACHES = {"box-apt-archives": "/var/cache/apt/archives", "box-uv": "/var/cache/python-venv/uv"}
# site.yml's play with the one package transaction, and plain-stack.sh's phase
# for the same: apt's time swings by 10 s from one fresh box to the next on
# either side, so the pairs are also compared without it.
PACKAGES_PLAY = "Install every role's Debian packages in one transaction per host"
PACKAGES_PHASE = "packages"
GOALS = {
    "fresh_vs_script_ratio": 1.25,
    "noop_s": 20,
    "check_s": 25,
    "patch_s": 10,
}


def summary(samples):
    return {"min": round(min(samples), 1), "median": round(statistics.median(samples), 1),
            "runs": [round(x, 1) for x in samples]}


def timed(argv, **kwargs):
    start = time.monotonic()
    result = subprocess.run(argv, check=False, text=True, **kwargs)
    return time.monotonic() - start, result


def create_box(name):
    binds = []
    for cache, inside in BOX_CACHES.items():
        (CACHE / cache).mkdir(parents=True, exist_ok=True)
        binds += ["--bind", f"{CACHE / cache}:{inside}"]
    subprocess.run([str(BOX), "destroy", name], check=True, stderr=subprocess.DEVNULL)
    out = subprocess.run([str(BOX), "create", name, *binds], check=True, text=True,
                         stdout=subprocess.PIPE).stdout
    return json.loads(out.strip().splitlines()[-1])


def destroy_box(name):
    subprocess.run([str(BOX), "destroy", name], check=True, stderr=subprocess.DEVNULL)


def box_boot(runs):
    subprocess.run([str(BOX), "rootfs"], check=True)
    created, destroyed = [], []
    for i in range(runs):
        name = f"bench-boot-{i}"
        start = time.monotonic()
        subprocess.run([str(BOX), "create", name], check=True, stdout=subprocess.DEVNULL)
        created.append(time.monotonic() - start)
        start = time.monotonic()
        destroy_box(name)
        destroyed.append(time.monotonic() - start)
    return {"create_to_running_s": summary(created), "destroy_s": summary(destroyed), "target_s": 15}


class Mirror:
    """The livekit-server release served from loopback, as scripts/demo does."""

    def __init__(self, workdir):
        release = subprocess.run([str(ARCHIVE), "pack", LIVEKIT_VERSION], check=True, text=True,
                                 stdout=subprocess.PIPE).stdout.strip().splitlines()[-1]
        self.root = workdir / "mirror"
        (self.root / "releases").mkdir(parents=True)
        (self.root / "releases" / f"v{LIVEKIT_VERSION}").symlink_to(release)
        self.release = pathlib.Path(release)
        # The role takes a download only against a sha256 known in advance:
        # the one `pack` wrote beside the archive it built.
        archive = f"livekit_{LIVEKIT_VERSION}_linux_amd64.tar.gz"
        listed = re.search(r"(?m)^([0-9a-f]{64}) [ *]" + re.escape(archive) + r"[ \t]*(?=\n|\Z)",
                           (self.release / "checksums.txt").read_text())
        if not listed:
            sys.exit(f"bench: {self.release / 'checksums.txt'} lists no sha256 for {archive}")
        self.sha256 = listed.group(1)
        self.pidfile = workdir / "mirror.pid"
        self.port = port_from_values("bench_mirror_port")
        subprocess.run([str(ARCHIVE), "serve", str(self.root), "--port", str(self.port),
                        "--pidfile", str(self.pidfile)], check=True)
        self.base_url = f"http://127.0.0.1:{self.port}/releases"

    def stop(self):
        subprocess.run([str(ARCHIVE), "stop", "--pidfile", str(self.pidfile)], check=False)


def port_from_values(name):
    return int(yaml.safe_load(VALUES.read_text())[name])


def write_inventory(box, path):
    path.write_text("\n".join([
        "all:", "  hosts:", "    stack:",
        "      ansible_connection: ssh",
        f"      ansible_host: {box['address']}",
        f"      ansible_port: {box['port']}",
        "      ansible_user: root",
        f"      ansible_ssh_private_key_file: {box['identity_file']}",
        f"      ansible_ssh_common_args: -o UserKnownHostsFile={box['known_hosts']}", ""]))


def write_secrets(path):
    password = secrets.token_urlsafe(24)
    path.write_text(f"postgresql_db_password: {password}\nletta_db_password: {password}\n"
                    f"livekit_api_key: API{secrets.token_hex(6)}\n"
                    f"livekit_api_secret: {secrets.token_urlsafe(36)}\n"
                    f"letta_encryption_key: {secrets.token_urlsafe(32)}\n")
    path.chmod(0o600)
    return path


class Stack:
    """ansible-playbook against one box, the way `make up` runs it."""

    def __init__(self, workdir, mirror, box):
        self.workdir = workdir
        self.inventory = workdir / f"{box['name']}.yml"
        write_inventory(box, self.inventory)
        self.extra = ["-e", f"@{VALUES}", "-e", f"@{workdir / 'secrets.yml'}",
                      "-e", f"livekit_download_base_url={mirror.base_url}", "-e", f"livekit_archive_sha256={mirror.sha256}"]

    def play(self, label, playbook, *args):
        # profile_tasks' own cost is a few milliseconds per task.
        env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks",
                   PROFILE_TASKS_TASK_OUTPUT_LIMIT="10")
        argv = ["ansible-playbook", "-i", str(ROOT / "inventories" / "local"), "-i", str(self.inventory),
                str(ROOT / "playbooks" / playbook), *self.extra, *args]
        elapsed, result = timed(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        log = self.workdir / f"{label}-{len(list(self.workdir.glob(f'{label}-*.log'))) + 1}.log"
        log.write_text(result.stdout)
        if result.returncode != 0:
            sys.exit(f"bench: {playbook} {' '.join(args)} failed (exit {result.returncode}); log: {log}\n"
                     + "\n".join(result.stdout.splitlines()[-30:]))
        return elapsed, result.stdout


def recap(output):
    match = re.search(r"ok=(\d+)\s+changed=(\d+)", output.split("PLAY RECAP")[-1])
    return {"ok": int(match.group(1)), "changed": int(match.group(2))}


def profile_top(output):
    """profile_tasks' closing list: '<task> ---- 1.23s'."""
    rows = re.findall(r"^(.+?) -+ (\d+\.\d+)s$", output.split("PLAY RECAP")[-1], re.M)
    return [{"task": task.strip(), "s": float(secs)} for task, secs in rows][:10]


# profile_tasks' line at each task's start ends with the run's total so far:
# "Friday 27 November 2026  00:56:39 +0000 (0:00:42.015)       0:00:48.217 ****".
RUNNING_TOTAL = re.compile(r"\) +(\d+):(\d+):(\d+\.\d+) \*+ *$")


def running_total(line):
    """Seconds since the run began, read from a profile_tasks line; None for any other line."""
    match = RUNNING_TOTAL.search(line)
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def profile_by_play(output, elapsed):
    """Seconds per play, from profile_tasks' running total at each play's first task."""
    body, _marker, closing = output.partition("TASKS RECAP")
    starts, play = [], None
    for line in body.splitlines():
        header = re.match(r"^PLAY \[(.+?)\] \*", line)
        if header:
            play = header.group(1)
        elif play:
            total = running_total(line)
            if total is not None:
                starts.append((play, total))
                play = None
    end = next(total for total in map(running_total, closing.splitlines()) if total is not None)
    rows = [("start-up, before the first task", elapsed - end)]
    ends = [start for _name, start in starts[1:]] + [end]
    rows += [(name, until - start) for (name, start), until in zip(starts, ends)]
    return [{"part": name, "s": round(secs, 1)} for name, secs in rows]


def seconds_of(rows, part):
    return next(row["s"] for row in rows if row["part"] == part)


def outside_packages_pairs(fresh_runs, fresh_packages, script_runs, script_packages):
    """Each fresh converge over the script run before it, both without their package install."""
    return [round((fresh - fresh_apt) / (plain - plain_apt), 2)
            for fresh, fresh_apt, plain, plain_apt in zip(fresh_runs, fresh_packages, script_runs, script_packages)]


def script_phases(output):
    """plain-stack.sh's 'phase NAME EPOCH' marks as seconds per phase."""
    marks = [(name, float(at)) for name, at in re.findall(r"^phase (\S+) (\d+\.\d+)$", output, re.M)]
    ends = [at for _name, at in marks[1:]]
    return [{"part": name, "s": round(until - at, 1)} for (name, at), until in zip(marks, ends)]


def stack(runs, workdir, mirror, before_each_fresh=None):
    write_secrets(workdir / "secrets.yml")
    fresh, fresh_packages = [], []
    try:
        for i in range(runs):
            if before_each_fresh:
                before_each_fresh(i)
            box = create_box("bench-stack")
            converge = Stack(workdir, mirror, box)
            elapsed, output = converge.play("fresh", "site.yml")
            fresh.append(elapsed)
            fresh_top = profile_top(output)
            fresh_plays = profile_by_play(output, elapsed)
            fresh_packages.append(seconds_of(fresh_plays, PACKAGES_PLAY))
            print(f"bench: fresh converge {i + 1}/{runs}: {elapsed:.1f} s {recap(output)}", file=sys.stderr)
            if i < runs - 1:
                destroy_box("bench-stack")
        report = {"fresh_converge_s": summary(fresh), "fresh_packages_play_s": fresh_packages,
                  "fresh_profile_top10": fresh_top, "fresh_by_play": fresh_plays}
        for key, playbook, args in (("noop_s", "site.yml", ()), ("check_s", "site.yml", ("--check",)),
                                    ("patch_s", "patch.yml", ())):
            label = key.removesuffix("_s")
            samples, last = [], ""
            for _run in range(runs):
                elapsed, last = converge.play(label, playbook, *args)
                samples.append(elapsed)
            report[key] = summary(samples) | recap(last)
            if key == "noop_s":
                report["noop_tasks"] = len(re.findall(r"^TASK \[", last, re.M))
                report["noop_profile_top10"] = profile_top(last)
            print(f"bench: {key}: {report[key]}", file=sys.stderr)
    finally:
        destroy_box("bench-stack")
    return report


def script_inputs(mirror):
    roles = ROOT / "roles"
    return {roles / "letta/files/locks": "locks", roles / "livekit_agents/files/locks": "agents-locks",
            roles / "letta/files/fetch-sdist.py": "fetch-sdist.py",
            roles / "python_venv/vars/main.yml": "vars-python_venv.yml", HERE / "plain-stack.sh": "plain-stack.sh",
            mirror.release / f"livekit_{LIVEKIT_VERSION}_linux_amd64.tar.gz": f"livekit_{LIVEKIT_VERSION}_linux_amd64.tar.gz",
            mirror.release / "checksums.txt": "checksums.txt"}


def script_environment():
    """The versions and ports the roles would use, read where the roles keep them."""
    def role_file(path):
        return yaml.safe_load((ROOT / "roles" / path).read_text())
    values = yaml.safe_load(VALUES.read_text())
    letta_version = role_file("letta/defaults/main.yml")["letta_version"]
    env = {"LETTA_VERSION": letta_version, "LIVEKIT_VERSION": LIVEKIT_VERSION,
           "SDIST_SHA256": role_file("letta/vars/main.yml")["_letta_releases"][letta_version]["sdist_sha256"],
           "AGENTS_VERSION": role_file("livekit_agents/defaults/main.yml")["livekit_agents_version"],
           "PG_PORT": values["postgresql_port"], "LETTA_PORT": values["letta_port"],
           "LIVEKIT_PORT": values["livekit_port"], "LIVEKIT_UDP_PORT": values["livekit_rtc_udp_port"]}
    return " ".join(f"{k}={v}" for k, v in env.items())


def script_once(i, workdir, mirror):
    box = create_box("bench-script")
    try:
        root = CACHE / "boxes" / "bench-script" / "root" / "root" / "bench"
        root.mkdir(parents=True)
        for src, name in script_inputs(mirror).items():
            (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
        elapsed, result = timed([str(BOX), "ssh", "bench-script", f"{script_environment()} bash /root/bench/plain-stack.sh"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        (workdir / f"script-{i + 1}.log").write_text(result.stdout)
        if result.returncode != 0:
            sys.exit("bench: plain-stack.sh failed:\n" + "\n".join(result.stdout.splitlines()[-30:]))
        print(f"bench: plain script {i + 1}: {elapsed:.1f} s", file=sys.stderr)
        return elapsed, script_phases(result.stdout)
    finally:
        destroy_box("bench-script")


def script_report(results):
    """The runs' seconds, and the last run's phases (paired with the last fresh converge)."""
    return {"plain_script_s": summary([elapsed for elapsed, _phases in results]),
            "packages_phase_s": [seconds_of(phases, PACKAGES_PHASE) for _elapsed, phases in results],
            "phases": results[-1][1]}


def script(runs, workdir, mirror):
    return script_report([script_once(i, workdir, mirror) for i in range(runs)])


def table(report):
    rows = [("box boot (s)", report.get("box-boot", {}).get("create_to_running_s"), "<= 15")]
    stack_report = report.get("stack", {})
    script_report = report.get("script", {})
    rows.append(("plain shell script, fresh box (s)", script_report.get("plain_script_s"), "yardstick"))
    fresh = stack_report.get("fresh_converge_s")
    ratio = ""
    if fresh and script_report.get("plain_script_s"):
        ratio = f" = {fresh['median'] / script_report['plain_script_s']['median']:.2f}x script"
    rows.append(("fresh converge (s)" + ratio, fresh, f"<= {GOALS['fresh_vs_script_ratio']}x script"))
    rows.append(("no-op re-run (s)", stack_report.get("noop_s"), f"<= {GOALS['noop_s']}"))
    rows.append(("check mode, converged box (s)", stack_report.get("check_s"), f"<= {GOALS['check_s']}"))
    rows.append(("patch.yml, patched box (s)", stack_report.get("patch_s"), f"<= {GOALS['patch_s']}"))
    lines = [f"| {'what':<45} | {'min':>6} | {'median':>6} | {'goal':<16} |", f"|{'-' * 47}|{'-' * 8}|{'-' * 8}|{'-' * 18}|"]
    for what, figures, goal in rows:
        if figures:
            lines.append(f"| {what:<45} | {figures['min']:>6} | {figures['median']:>6} | {goal:<16} |")
    if "fresh_vs_script_pairs" in stack_report:
        lines.append("\nfresh converge / the script run just before it: "
                     + ", ".join(f"{r:.2f}x" for r in stack_report["fresh_vs_script_pairs"]))
    if "fresh_vs_script_outside_packages_pairs" in stack_report:
        lines.append("the same pairs without their package install (apt): "
                     + ", ".join(f"{r:.2f}x" for r in stack_report["fresh_vs_script_outside_packages_pairs"]))
    if "fresh_profile_top10" in stack_report:
        lines.append("\nfresh converge, slowest tasks (profile_tasks, last run):")
        lines += [f"  {row['s']:6.2f} s  {row['task']}" for row in stack_report["fresh_profile_top10"]]
    if "phases" in script_report:
        lines.append("\nwhere the time goes, plain script (last run, s):")
        lines += [f"  {row['s']:6.1f}  {row['part']}" for row in script_report["phases"]]
    if "fresh_by_play" in stack_report:
        lines.append("\nwhere the time goes, fresh converge by play (last run, s):")
        lines += [f"  {row['s']:6.1f}  {row['part']}" for row in stack_report["fresh_by_play"]]
    if "noop_s" in stack_report:
        lines.append(f"\nno-op re-run: {stack_report['noop_tasks']} tasks, changed={stack_report['noop_s']['changed']}; "
                     "slowest (profile_tasks):")
        lines += [f"  {row['s']:6.2f} s  {row['task']}" for row in stack_report["noop_profile_top10"]]
    return "\n".join(lines)


def compare(old_path, new_path):
    old, new = (json.loads(pathlib.Path(p).read_text()) for p in (old_path, new_path))
    print(f"old: {old_path} ({old['machine']['date']})\n{table(old)}\n\nnew: {new_path} ({new['machine']['date']})\n{table(new)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="box-boot,script,stack", help="comma-separated: box-boot, script, stack")
    parser.add_argument("--output", type=pathlib.Path)
    parser.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"))
    args = parser.parse_args()
    if args.compare:
        compare(*args.compare)
        return 0
    parts = args.only.split(",")
    now = datetime.datetime.now(datetime.timezone.utc)
    report = {"machine": {"date": now.isoformat(timespec="seconds"), "host": platform.node(),
                          "cpus": os.cpu_count(), "load_at_start": os.getloadavg()[0], "runs": args.runs}}
    if "box-boot" in parts:
        report["box-boot"] = box_boot(args.runs)
    if "script" in parts or "stack" in parts:
        with tempfile.TemporaryDirectory(prefix="hybridstack-bench-") as tmp:
            workdir = pathlib.Path(tmp)
            mirror = Mirror(workdir)
            try:
                if "script" in parts and "stack" in parts:
                    # Each fresh converge right after a script run: the machine's
                    # speed drifts over minutes, and the ratio compares pairs.
                    script_runs = []
                    report["stack"] = stack(args.runs, workdir, mirror,
                                            lambda i: script_runs.append(script_once(i, workdir, mirror)))
                    report["script"] = script_report(script_runs)
                    pairs = zip(report["stack"]["fresh_converge_s"]["runs"], report["script"]["plain_script_s"]["runs"])
                    report["stack"]["fresh_vs_script_pairs"] = [round(fresh / plain, 2) for fresh, plain in pairs]
                    report["stack"]["fresh_vs_script_outside_packages_pairs"] = outside_packages_pairs(
                        report["stack"]["fresh_converge_s"]["runs"], report["stack"]["fresh_packages_play_s"],
                        report["script"]["plain_script_s"]["runs"], report["script"]["packages_phase_s"])
                elif "script" in parts:
                    report["script"] = script(args.runs, workdir, mirror)
                elif "stack" in parts:
                    report["stack"] = stack(args.runs, workdir, mirror)
            finally:
                mirror.stop()
                logs = CACHE / "bench-logs"
                shutil.rmtree(logs, ignore_errors=True)
                shutil.copytree(workdir, logs, ignore=shutil.ignore_patterns("secrets.yml", "mirror*"))
                print(f"bench: the runs' output is in {logs}", file=sys.stderr)
    output = args.output or ROOT / "docs" / "bench-results" / f"{now:%Y%m%dT%H%M%SZ}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    text = f"make bench on {report['machine']['host']} ({report['machine']['cpus']} CPUs), {report['machine']['date']}\n\n{table(report)}\n"
    output.with_suffix(".txt").write_text(text)
    print(text)
    print(f"report: {output} and {output.with_suffix('.txt').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
