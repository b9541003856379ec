"""Load user adapters (or workloads) from a module name or a ``.py`` file path.

A plugin registers adapters with ``@architectures.register`` at import. The runner loads
the same plugins in every cell process, so user adapters are measured like built-ins.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from harness.errors import UsageError


def load_plugin(name: str) -> None:
    try:
        if name.endswith(".py"):
            path = Path(name).resolve()
            if not path.is_file():
                raise UsageError(f"plugin file {name!r} does not exist")
            mod_name = f"seqbench_plugin_{path.stem}"
            if mod_name in sys.modules:
                return
            spec = importlib.util.spec_from_file_location(mod_name, path)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(name)
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken plugin is the user's input
        raise UsageError(f"cannot load plugin {name!r}: {type(exc).__name__}: {exc}") from None


def load_plugins(names: tuple[str, ...] | list[str]) -> None:
    for name in names:
        load_plugin(name)
