#!/usr/bin/env python
"""Benchmarks that are reported, never asserted in the test suite.

box-boot: create a box from the cached rootfs until `systemctl is-system-running`
says running, then destroy it; the target is under 15 s per box.
"""
import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
BOX = ROOT / "scripts" / "box"


def box_boot(runs):
    subprocess.run([str(BOX), "rootfs"], check=True)
    created, destroyed = [], []
    for i in range(runs):
        name = f"bench-{i}"
        start = time.monotonic()
        subprocess.run([str(BOX), "create", name], check=True, stdout=subprocess.DEVNULL)
        created.append(time.monotonic() - start)
        start = time.monotonic()
        subprocess.run([str(BOX), "destroy", name], check=True, stderr=subprocess.DEVNULL)
        destroyed.append(time.monotonic() - start)
    return {
        "create_to_running_s": {"median": round(statistics.median(created), 2), "max": round(max(created), 2),
                                "runs": [round(x, 2) for x in created]},
        "destroy_s": {"median": round(statistics.median(destroyed), 2)},
        "target_s": 15,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    report = {"box-boot": box_boot(args.runs)}
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
