#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, Hybridstack Maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: assert_all
short_description: Evaluate a list of input checks and fail once, naming every check that failed
version_added: 0.1.0
description:
  - Like M(ansible.builtin.assert), but for a list of checks, each with its own conditions and message.
  - Every check is evaluated, in order; the task fails once, and its message lists the message of every check
    that failed, so an operator sees all the mistakes of an inventory in one run.
  - A check's message is templated only when the check failed, and a check whose O(checks[].when) is false is
    not evaluated at all, so a message may read variables only its condition proves usable.
  - One task for many rules, because each task costs Ansible tens of milliseconds whatever it does, and a
    role's input checks are read on every run.
  - This runs on the controller only and contacts no host.
author:
  - Hybridstack Maintainers (@hybridstack)
options:
  checks:
    description:
      - The checks, evaluated in order.
      - Their conditions and messages are kept untemplated until the check is evaluated.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - What the check is about; named when the check itself cannot be evaluated.
        type: str
      that:
        description:
          - Conditional expressions, as in M(ansible.builtin.assert); the check fails at the first false one.
        type: list
        elements: raw
        required: true
      fail_msg:
        description:
          - The message when the check fails; it should name the variable and what is wrong with it.
        type: str
        required: true
      when:
        description:
          - Conditional expressions; the check is evaluated only when all are true.
        type: list
        elements: raw
      vars:
        description:
          - Variables only this check sees, templated lazily like task C(vars).
        type: dict
attributes:
  check_mode:
    support: full
    description: The action only reads variables.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
  platform:
    platforms: all
    support: full
    description: The action runs on the controller.
notes:
  - A check whose conditions raise an error (an undefined variable, a bad type) counts as failed; its message
    names the check and the error.
  - Needs ansible-core 2.19 or later, which lets an action keep its arguments untemplated.
seealso:
  - module: ansible.builtin.assert
"""

EXAMPLES = r"""
- name: Check the web input
  hybridstack.letta_livekit.assert_all:
    checks:
      - name: web_port
        that: web_port | int >= 1 and web_port | int <= 65535
        fail_msg: "web_port {{ web_port }} is not a TCP port (1-65535)."
      - name: web_tls_cert_file
        when: web_tls_enabled
        that: web_tls_cert_file is file
        fail_msg: "web_tls_cert_file {{ web_tls_cert_file }} does not exist on the controller."
"""

RETURN = r"""
msg:
  description:
    - When one check failed, its message; when several did, how many, then each message on a line of its own
      starting with C(- ), in the order of the checks.
    - When none failed, how many checks applied and passed.
  returned: always
  type: str
"""
