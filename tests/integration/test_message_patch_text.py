# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure rewrite functions, on the real message.py of every supported release."""

import difflib
import hashlib

import pytest

from ansible_collections.hybridstack.letta_livekit.plugins.module_utils import letta_message_patch as lmp


def sha256(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_every_release_ships_the_unpatched_form(release):
    version, original = release
    found = lmp.classify(original)
    assert found.status == lmp.UNPATCHED, (version, found)
    # Both listeners (bulk flush and single insert) carry the statement.
    assert (found.unpatched, found.patched, found.identity, found.equality) == (2, 0, 2, 0)
    assert [s["form"] for s in lmp.find_statements(original)] == [lmp.UNPATCHED] * 2


def test_patch_rewrites_only_the_statements_and_comparisons(release):
    original = release.text
    patched = lmp.apply_patch(original)
    assert lmp.classify(patched).status == lmp.PATCHED
    assert "INSERT OR IGNORE" not in patched
    assert patched.count("ON CONFLICT (id) DO NOTHING") == 2
    assert "settings.database_engine == DatabaseChoice.SQLITE" in patched
    assert " is DatabaseChoice." not in patched

    removed, added = [], []
    for line in difflib.ndiff(original.splitlines(True), patched.splitlines(True)):
        if line.startswith("- "):
            removed.append(line[2:].strip())
        elif line.startswith("+ "):
            added.append(line[2:].strip())
    assert removed == [
        "if settings.database_engine is DatabaseChoice.SQLITE:",
        "INSERT OR IGNORE INTO message_sequence (id, next_val)",
    ] * 2
    assert added == [
        "if settings.database_engine == DatabaseChoice.SQLITE:",
        "INSERT INTO message_sequence (id, next_val)",
        "WHERE true",
        "ON CONFLICT (id) DO NOTHING",
    ] * 2


def test_patched_lines_keep_the_original_indentation(release):
    original = release.text
    patched = lmp.apply_patch(original)
    for statement in lmp.find_statements(patched):
        block = patched[statement["start"]:statement["end"]].splitlines()
        indents = {len(line) - len(line.lstrip(" ")) for line in block[2:]}
        assert len(indents) == 1, block
        assert block[0].startswith(" " * 12), block


def test_patched_release_compiles(release):
    original = release.text
    compile(lmp.apply_patch(original), "message.py", "exec", dont_inherit=True)


def test_patch_is_idempotent(release):
    original = release.text
    once = lmp.apply_patch(original)
    assert lmp.apply_patch(once) == once
    assert lmp.desired_text(once, "present")[1] == once


def test_revert_gives_back_identical_bytes(release):
    original = release.text
    reverted = lmp.revert_patch(lmp.apply_patch(original))
    assert sha256(reverted) == sha256(original)
    assert lmp.revert_patch(original) == original


def test_desired_text_reports_the_transition(release):
    original = release.text
    patched = lmp.apply_patch(original)
    found, text, after = lmp.desired_text(original, "present")
    assert (found.status, text, after) == (lmp.UNPATCHED, patched, lmp.PATCHED)
    found, text, after = lmp.desired_text(patched, "absent")
    assert (found.status, text, after) == (lmp.PATCHED, original, lmp.UNPATCHED)
    with pytest.raises(ValueError):
        lmp.desired_text(original, "latest")


def test_windows_line_endings_round_trip(release):
    original = release.text
    crlf = original.replace("\n", "\r\n")
    patched = lmp.apply_patch(crlf)
    assert "WHERE true\r\n" in patched and "\n" not in patched.replace("\r\n", "")
    assert lmp.revert_patch(patched) == crlf


def _half_patched(original):
    first = lmp.UNPATCHED_STATEMENT.search(original)
    return original[:first.start()] + lmp.apply_patch(original[first.start():first.end()]) + original[first.end():]


UNKNOWN_VARIANTS = {
    "statement respaced": lambda t: t.replace("INSERT OR IGNORE INTO message_sequence (id, next_val)",
                                              "INSERT OR IGNORE INTO message_sequence(id, next_val)", 1),
    "statement in lower case": lambda t: t.replace("INSERT OR IGNORE INTO message_sequence",
                                                   "insert or ignore into message_sequence", 1),
    "other conflict clause": lambda t: t.replace("INSERT OR IGNORE", "INSERT OR REPLACE", 1),
    "half patched": _half_patched,
    "comparisons already ==": lambda t: t.replace(" is DatabaseChoice.", " == DatabaseChoice."),
    "patched but comparisons still is": lambda t: lmp.apply_patch(t).replace(" == DatabaseChoice.", " is DatabaseChoice.", 1),
    "patched by hand on one line": lambda t: lmp.apply_patch(t).replace(
        "FROM messages\n            WHERE true\n            ON CONFLICT", "FROM messages WHERE true ON CONFLICT", 1),
}


@pytest.mark.parametrize("variant", sorted(UNKNOWN_VARIANTS))
def test_unknown_content_is_refused_not_guessed(release, variant):
    original = release.text
    text = UNKNOWN_VARIANTS[variant](original)
    assert text != original
    found = lmp.classify(text)
    assert found.status == lmp.UNKNOWN, found
    assert found.reason
    for rewrite in (lmp.apply_patch, lmp.revert_patch):
        with pytest.raises(lmp.UnknownContent):
            rewrite(text)
    for state in ("present", "absent"):
        with pytest.raises(lmp.UnknownContent):
            lmp.desired_text(text, state)


def test_a_file_without_the_statements_has_nothing_to_patch(release):
    original = release.text
    # A release that dropped the SQLite listeners: keep everything above them.
    text = original[:original.index('@event.listens_for(Session, "before_flush")')]
    assert "message_sequence" not in text
    found = lmp.classify(text)
    assert found.status == lmp.NOTHING_TO_PATCH
    assert lmp.apply_patch(text) == text and lmp.revert_patch(text) == text
    assert lmp.desired_text(text, "present")[2] == lmp.NOTHING_TO_PATCH


def test_statement_sql_is_what_the_database_receives(release):
    original = release.text
    sql = [s["sql"] for s in lmp.find_statements(lmp.apply_patch(original))]
    assert sql == ["INSERT INTO message_sequence (id, next_val)\nSELECT 1, COALESCE(MAX(sequence_id), 0) + 1\n"
                   "FROM messages\nWHERE true\nON CONFLICT (id) DO NOTHING"] * 2
