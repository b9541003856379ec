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
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(mod_name, None)  # half-imported: not loaded
                raise
        else:
            importlib.import_module(name)
    except UsageError:
        raise
    except SystemExit as exc:  # sys.exit() or exit() at import: not the run's exit
        raise UsageError(f"cannot load plugin {name!r}: it called sys.exit({exc.code!r}) "
                         "while being imported") from None
    except Exception as exc:  # noqa: BLE001 - a broken plugin is the user's input
        raise UsageError(f"cannot load plugin {name!r}: {type(exc).__name__}: {exc}") from None


def resolved(names: tuple[str, ...] | list[str]) -> list[str]:
    """Plugins as a run stores them: ``.py`` files by absolute path (a later
    ``profile --from`` may run from another directory), modules by name."""
    return [str(Path(n).resolve()) if n.endswith(".py") else n for n in names]


def load_plugins(names: tuple[str, ...] | list[str]) -> None:
    for name in names:
        load_plugin(name)
