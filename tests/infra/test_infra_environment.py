"""The functions' environment as synthesized against what functions/settings.py reads (a test
may import the runtime; infra never does)."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, fields

from infra_support import REPO_ROOT, resources_of_type

from functions.settings import Settings

RUNTIME_PACKAGES = {"functions", "facerec", "layers"}


class RecordingEnviron(Mapping):
    """An environment that remembers every name read from it."""

    def __init__(self, variables: Mapping[str, object]):
        self._variables = dict(variables)
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> object:
        self.read.add(name)
        return self._variables[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._variables)

    def __len__(self) -> int:
        return len(self._variables)


def required_variables() -> set[str]:
    """The variables of the Settings fields without a default."""
    return {
        field.name.upper()
        for field in fields(Settings)
        if field.default is MISSING and field.default_factory is MISSING
    }


def test_every_function_gets_what_the_settings_require_and_nothing_they_do_not_read(
    synthesized,
):
    required = required_variables()
    assert {"INGEST_BUCKET", "FACES_BUCKET", "CATALOG_TABLE", "VECTOR_BUCKET"} <= required
    functions = resources_of_type(synthesized.service_json, "AWS::Lambda::Function")
    assert functions
    for logical_id, function in functions.items():
        variables = function["Properties"]["Environment"]["Variables"]
        assert required <= set(variables), logical_id
        environ = RecordingEnviron(variables)
        Settings.from_env(environ)  # and the values parse
        assert set(variables) <= environ.read, (logical_id, set(variables) - environ.read)


def test_infra_imports_nothing_from_the_runtime():
    for path in sorted((REPO_ROOT / "infra").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            assert not {name.split(".")[0] for name in names} & RUNTIME_PACKAGES, path.name
