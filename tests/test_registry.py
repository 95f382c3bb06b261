"""The generic registry: decorators, glob listing, suggestions, entry-point plugins."""
from importlib.metadata import EntryPoint

import pytest

from oodbench import registry as registry_mod
from oodbench.errors import UnknownNameError
from oodbench.registry import Registry


def test_register_get_list_glob():
    reg = Registry("widget", "oodbench.test_widgets")

    @reg.register("entropy_a")
    def a():
        return "A"

    @reg.register()
    def entmax_b():
        return "B"

    reg.add("msp", lambda: "M")
    assert reg.create("entropy_a") == "A"
    assert reg.get("entmax_b")() == "B"
    assert reg.list() == ["entmax_b", "entropy_a", "msp"]
    assert reg.list("ent*") == ["entmax_b", "entropy_a"]
    assert "msp" in reg and "nope" not in reg


def test_duplicate_registration_is_an_error():
    reg = Registry("widget", "oodbench.test_widgets")
    reg.add("x", lambda: 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("x", lambda: 2)
    reg.add("x", lambda: 3, overwrite=True)
    assert reg.create("x") == 3


def test_unknown_name_suggests_close_names():
    reg = Registry("widget", "oodbench.test_widgets")
    for n in ("entropy", "entmax", "maxlogit"):
        reg.add(n, lambda: None)
    with pytest.raises(UnknownNameError) as err:
        reg.get("entrop")
    msg = str(err.value)
    assert "'entrop'" in msg and "'entropy'" in msg and "oodbench.test_widgets" in msg


def test_entry_point_plugins_are_discovered(monkeypatch):
    reg = Registry("widget", "oodbench.test_widgets")
    ep = EntryPoint(name="plugged", value="collections:OrderedDict", group="oodbench.test_widgets")
    monkeypatch.setattr(registry_mod, "entry_points", lambda group: [ep] if group == "oodbench.test_widgets" else [])
    assert reg.list("plug*") == ["plugged"]
    assert reg.create("plugged") == {}


def test_broken_plugin_names_itself(monkeypatch):
    reg = Registry("widget", "oodbench.test_widgets")
    ep = EntryPoint(name="broken", value="no_such_module_xyz:thing", group="oodbench.test_widgets")
    monkeypatch.setattr(registry_mod, "entry_points", lambda group: [ep])
    with pytest.raises(ImportError, match="broken"):
        reg.list()
