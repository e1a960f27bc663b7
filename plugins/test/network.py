# -*- coding: utf-8 -*-
# Copyright (c) 2026, Hybridstack Maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""loopback: an address or name only this host reaches (127.0.0.0/8, ::1, localhost)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress


def loopback(address):
    address = str(address or "").strip("[]")
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class TestModule(object):
    def tests(self):
        return {"loopback": loopback}
