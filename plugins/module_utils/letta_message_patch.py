# -*- coding: utf-8 -*-
# Copyright (c) 2026, Hybridstack Maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Pure text functions behind the letta_message_patch module.

Letta's ``letta/orm/message.py`` seeds its ``message_sequence`` table with
``INSERT OR IGNORE``, which only SQLite understands. When the server talks to
PostgreSQL through the SQLite code path (LETTA_PG_URI missing), that statement
turns agent creation into HTTP 500. The patched form uses the upsert syntax
both engines accept. Nothing here touches the filesystem, so every decision the
module makes can be tested on the text of real releases.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# The Letta server releases whose message.py this rewrite was checked against
# (the unit tests run it on each). The letta role installs exactly these: its
# locks and sdist checksums must list the same releases (tests/meta checks it).
CHECKED_RELEASES = ("0.14.0", "0.15.1", "0.16.8")

UNPATCHED = "unpatched"
PATCHED = "patched"
NOTHING_TO_PATCH = "nothing_to_patch"
UNKNOWN = "unknown"

# Each line keeps its own indentation and the file's line ending, so the
# reverse rewrite can rebuild the original bytes exactly.
_HEAD = r"^(?P<i1>[ \t]*)"
_SELECT = (
    r"(?P<i2>[ \t]*)SELECT 1, COALESCE\(MAX\(sequence_id\), 0\) \+ 1(?P=nl)"
    r"(?P<i3>[ \t]*)FROM messages(?P=nl)"
)
UNPATCHED_STATEMENT = re.compile(
    _HEAD + r"INSERT OR IGNORE INTO message_sequence \(id, next_val\)(?P<nl>\r?\n)" + _SELECT,
    re.MULTILINE,
)
# SQLite (>= 3.24) needs the WHERE clause: without it the parser reads ON as
# the start of a join constraint of the SELECT.
PATCHED_STATEMENT = re.compile(
    _HEAD + r"INSERT INTO message_sequence \(id, next_val\)(?P<nl>\r?\n)" + _SELECT
    + r"(?P=i3)WHERE true(?P=nl)"
    r"(?P=i3)ON CONFLICT \(id\) DO NOTHING(?P=nl)",
    re.MULTILINE,
)
# Any insert into the sequence table, in whatever spelling: used to refuse
# files holding statements neither form above recognises.
ANY_SEQUENCE_INSERT = re.compile(r"\bINSERT\b(?:\s+OR\s+\w+)?\s+INTO\s+message_sequence\b", re.IGNORECASE)

# The runbook also turns identity comparisons against the enum into equality.
IDENTITY_COMPARISON = re.compile(r"(?<=[\w)\]]) is (?=DatabaseChoice\.\w)")
EQUALITY_COMPARISON = re.compile(r"(?<=[\w)\]]) == (?=DatabaseChoice\.\w)")


class UnknownContent(ValueError):
    """The text is neither the known unpatched nor the known patched form."""


class Classification(object):
    """What a message.py holds, with the counts that led to the verdict."""

    def __init__(self, status, unpatched=0, patched=0, identity=0, equality=0, inserts=0, reason=""):
        self.status = status
        self.unpatched = unpatched
        self.patched = patched
        self.identity = identity
        self.equality = equality
        self.inserts = inserts
        self.reason = reason

    def as_dict(self):
        return {
            "status": self.status,
            "unpatched_statements": self.unpatched,
            "patched_statements": self.patched,
            "is_comparisons": self.identity,
            "eq_comparisons": self.equality,
            "sequence_inserts": self.inserts,
            "reason": self.reason,
        }

    def __repr__(self):
        return "Classification(%r)" % (self.as_dict(),)


def _statement(match, insert, tail):
    """One statement in the matched text's own indentation and line endings;
    the two forms differ only in the INSERT line and the lines after FROM."""
    g = match.groupdict()
    lines = [g["i1"] + insert, g["i2"] + "SELECT 1, COALESCE(MAX(sequence_id), 0) + 1", g["i3"] + "FROM messages"]
    lines += [g["i3"] + line for line in tail]
    return "".join(line + g["nl"] for line in lines)


def _patched_statement(match):
    return _statement(match, "INSERT INTO message_sequence (id, next_val)", ["WHERE true", "ON CONFLICT (id) DO NOTHING"])


def _unpatched_statement(match):
    return _statement(match, "INSERT OR IGNORE INTO message_sequence (id, next_val)", [])


def _rewrite_forward(text):
    text = UNPATCHED_STATEMENT.sub(_patched_statement, text)
    return IDENTITY_COMPARISON.sub(" == ", text)


def _rewrite_backward(text):
    text = PATCHED_STATEMENT.sub(_unpatched_statement, text)
    return EQUALITY_COMPARISON.sub(" is ", text)


def _sql_of(match):
    """The statement as the database receives it: one line per source line."""
    return "\n".join(line.strip() for line in match.group(0).splitlines())


def find_statements(text):
    """Every sequence-table insert in a known form.

    Returns a list of dicts {form, start, end, sql}, ordered by position; form
    is UNPATCHED or PATCHED.
    """
    found = []
    for form, pattern in ((UNPATCHED, UNPATCHED_STATEMENT), (PATCHED, PATCHED_STATEMENT)):
        for match in pattern.finditer(text):
            found.append({"form": form, "start": match.start(), "end": match.end(), "sql": _sql_of(match)})
    return sorted(found, key=lambda item: item["start"])


def classify(text):
    """Tell which form a message.py is in.

    UNPATCHED: every sequence insert is the known INSERT OR IGNORE form and no
    enum comparison uses == yet. PATCHED: every one is the known upsert form
    and no enum comparison uses ``is``. NOTHING_TO_PATCH: the file inserts
    into message_sequence nowhere. Anything else is UNKNOWN, with a reason.
    """
    counts = dict(
        unpatched=len(UNPATCHED_STATEMENT.findall(text)),
        patched=len(PATCHED_STATEMENT.findall(text)),
        identity=len(IDENTITY_COMPARISON.findall(text)),
        equality=len(EQUALITY_COMPARISON.findall(text)),
        inserts=len(ANY_SEQUENCE_INSERT.findall(text)),
    )
    unpatched, patched, inserts = counts["unpatched"], counts["patched"], counts["inserts"]

    def unknown(reason):
        return Classification(UNKNOWN, reason=reason, **counts)

    if inserts == 0:
        return Classification(NOTHING_TO_PATCH, reason="no INSERT INTO message_sequence in the file", **counts)
    if inserts != unpatched + patched:
        return unknown(
            "%d INSERT INTO message_sequence statement(s), but only %d match the known unpatched form and %d the "
            "known patched form" % (inserts, unpatched, patched)
        )
    if unpatched and patched:
        return unknown("half patched: %d statement(s) unpatched and %d patched" % (unpatched, patched))
    if unpatched:
        if counts["equality"]:
            return unknown(
                "the statements are unpatched but %d DatabaseChoice comparison(s) already use '=='" % counts["equality"]
            )
        status = UNPATCHED
    else:
        if counts["identity"]:
            return unknown(
                "the statements are patched but %d DatabaseChoice comparison(s) still use 'is'" % counts["identity"]
            )
        status = PATCHED

    # The two rewrites must be exact inverses on this text, or a later
    # state=absent could not restore the original bytes.
    if status == UNPATCHED:
        round_trip = _rewrite_backward(_rewrite_forward(text))
    else:
        round_trip = _rewrite_forward(_rewrite_backward(text))
    if round_trip != text:
        return unknown("rewriting this file forth and back does not give it back unchanged")
    return Classification(status, reason="%d statement(s) %s" % (unpatched or patched, status), **counts)


def _convert(text, source_status, rewrite):
    """Rewrite text only when it is in source_status; refuse unknown content."""
    found = classify(text)
    if found.status == UNKNOWN:
        raise UnknownContent(found.reason)
    return rewrite(text) if found.status == source_status else text


def apply_patch(text):
    """The patched text of an unpatched or already patched file."""
    return _convert(text, UNPATCHED, _rewrite_forward)


def revert_patch(text):
    """The original text of a patched or never patched file."""
    return _convert(text, PATCHED, _rewrite_backward)


def desired_text(text, state):
    """(classification of text, text wanted for state, status after)."""
    found = classify(text)
    if found.status == UNKNOWN:
        raise UnknownContent(found.reason)
    if found.status == NOTHING_TO_PATCH:
        return found, text, NOTHING_TO_PATCH
    if state == "present":
        return found, apply_patch(text), PATCHED
    if state == "absent":
        return found, revert_patch(text), UNPATCHED
    raise ValueError("state must be present or absent, not %r" % (state,))
