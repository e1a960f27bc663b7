"""Evaluate a list of input checks and fail once, naming every check that failed.

One task per role instead of one task per rule: the validation pass reads
variables only, and each task costs Ansible tens of milliseconds whatever it
does, so a role's rules in one task keep re-runs fast; the operator sees every
mistake at once instead of one per run.
"""
from __future__ import annotations

from ansible.errors import AnsibleError, AnsibleActionFail
from ansible.plugins.action import ActionBase

CHECK_KEYS = frozenset(("name", "that", "fail_msg", "when", "vars"))


def as_list(value):
    return value if isinstance(value, list) else [value]


class ActionModule(ActionBase):
    _requires_connection = False
    _VALID_ARGS = frozenset(("checks",))

    @classmethod
    def finalize_task_arg(cls, name, value, templar, context):
        # Each rule's condition and message are templated in run(), one check
        # at a time: a message may only make sense once its condition failed,
        # and a check's `when` guards the variables the rest of it reads.
        if name == "checks":
            return value
        return super().finalize_task_arg(name, value, templar, context)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        checks = self._task.args.get("checks")
        if not isinstance(checks, list) or not checks:
            raise AnsibleActionFail("assert_all: 'checks' must be a non-empty list of checks")
        failures = []
        evaluated = 0
        for index, check in enumerate(checks, 1):
            if not isinstance(check, dict) or "that" not in check or "fail_msg" not in check:
                raise AnsibleActionFail(f"assert_all: check {index} needs 'that' and 'fail_msg'")
            unknown = set(check) - CHECK_KEYS
            if unknown:
                raise AnsibleActionFail(f"assert_all: check {index} has unknown keys {sorted(unknown)}")
            label = check.get("name") or f"check {index}"
            templar = self._templar
            if check.get("vars"):
                merged = dict(templar.available_variables)
                merged.update(check["vars"])
                templar = templar.copy_with_new_env(available_variables=merged)
            try:
                if not all(templar.evaluate_conditional(c) for c in as_list(check.get("when", []))):
                    continue
                evaluated += 1
                if all(templar.evaluate_conditional(c) for c in as_list(check["that"])):
                    continue
                failures.append(str(templar.template(check["fail_msg"])).strip())
            except AnsibleError as error:
                failures.append(f"{label}: the check itself failed to evaluate: {error.message}")
        if failures:
            result["failed"] = True
            result["msg"] = failures[0] if len(failures) == 1 else (
                f"{len(failures)} checks failed:\n" + "\n".join(f"- {text}" for text in failures))
        else:
            result["msg"] = f"all {evaluated} checks that apply passed"
        result["changed"] = False
        return result
