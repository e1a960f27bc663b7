"""Unit tests: the collection's own code, on this machine only (no package
index, no database); tests/integration has those that need them."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / ".collections"
if not (COLLECTIONS / "ansible_collections" / "hybridstack" / "letta_livekit").exists():
    raise RuntimeError("%s does not make this checkout importable; run 'make tools'" % COLLECTIONS)
sys.path.insert(0, str(COLLECTIONS))
