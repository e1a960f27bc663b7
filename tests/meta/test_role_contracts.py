"""Every role states its variables once: defaults, argument specs and README agree."""
import pathlib
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir())


def load(path):
    return yaml.safe_load(path.read_text()) or {}


def test_there_are_roles():
    assert ROLES, "no roles found under roles/"


def entry_points(role):
    return load(ROOT / "roles" / role / "meta" / "argument_specs.yml").get("argument_specs", {})


def options(role):
    """Every entry point's options; entry points may share one (the same variable, the same spec)."""
    return {name: option for spec in entry_points(role).values() for name, option in spec.get("options", {}).items()}


@pytest.mark.parametrize("role", ROLES)
def test_role_has_argument_specs(role):
    tasks = ROOT / "roles" / role / "tasks"
    if (tasks / "main.yml").exists():
        assert "main" in entry_points(role), f"{role}: no 'main' entry point"
    else:
        # An internal role, called only with tasks_from: each task file is an entry point.
        assert sorted(entry_points(role)) == sorted(p.stem for p in tasks.glob("*.yml")), f"{role}: entry points"


@pytest.mark.parametrize("role", ROLES)
def test_every_entry_point_has_its_task_file(role):
    missing = [name for name in entry_points(role) if not (ROOT / "roles" / role / "tasks" / f"{name}.yml").exists()]
    assert missing == [], f"{role}: argument specs for entry points without a task file"


@pytest.mark.parametrize("role", ROLES)
def test_defaults_equal_argument_spec_defaults(role):
    defaults = load(ROOT / "roles" / role / "defaults" / "main.yml")
    spec_defaults = {name: opt["default"] for name, opt in options(role).items() if "default" in opt}
    assert sorted(set(defaults) - set(options(role))) == [], f"{role}: in defaults/main.yml but not in the argument specs"
    assert sorted(set(spec_defaults) - set(defaults)) == [], f"{role}: spec default missing from defaults/main.yml"
    differing = {k: (defaults[k], spec_defaults.get(k, "<no default in spec>"))
                 for k in defaults if defaults[k] != spec_defaults.get(k, object())}
    assert differing == {}, f"{role}: defaults differ (defaults, spec)"


@pytest.mark.parametrize("role", ROLES)
def test_entry_points_agree_on_shared_options(role):
    specs = entry_points(role).values()
    shared = {name for spec in specs for name in spec.get("options", {})}
    differing = sorted(name for name in shared
                       if len({repr(spec["options"][name]) for spec in specs if name in spec.get("options", {})}) > 1)
    assert differing == [], f"{role}: entry points describe these options differently"


@pytest.mark.parametrize("role", ROLES)
def test_public_variables_are_role_prefixed(role):
    assert [n for n in options(role) if not n.startswith(role + "_")] == []


@pytest.mark.parametrize("role", ROLES)
def test_internal_variables_are_underscored(role):
    internal = ROOT / "roles" / role / "vars" / "main.yml"
    if internal.exists():
        assert [n for n in load(internal) if not n.startswith("_" + role + "_")] == []


def test_readme_variable_tables_are_current():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "role-docs"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("template", sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("roles/*/templates/**/*.j2")))
def test_templates_carry_the_managed_header(template):
    head = (ROOT / template).read_text().splitlines()[:3]
    assert any("ansible_managed | comment" in line for line in head), f"{template}: no ansible_managed header"
