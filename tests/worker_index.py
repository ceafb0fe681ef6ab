"""Index function_app.py with the real Python worker library (azure-functions-runtime, Python
3.13+), as the Functions host does at startup, and print what it found as JSON.

Run by tests/test_worker_indexing.py in a Python 3.13 virtual environment. The worker's
registry validates each function (binding directions, parameter names against binding
names, annotations) exactly as in production; a failure there drops the whole app.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from azure_functions_runtime import functions, loader  # type: ignore[import-not-found]  # noqa: E402
from azure_functions_runtime.bindings import meta  # type: ignore[import-not-found]  # noqa: E402


class _BindingInfo:
    # Enum values of BindingInfo in the host's FunctionRpc.proto (the gRPC module the host
    # hands the worker at runtime; only these members are read while indexing).
    out = 1
    inout = 2
    undefined = 0


class _Protos:
    BindingInfo = _BindingInfo


def main() -> None:
    meta.load_binding_registry()  # what the worker does on its init request
    indexed = loader.index_function_app(str(ROOT / "function_app.py"))
    registry = functions.Registry()
    found = []
    for function in indexed:
        info = registry.add_indexed_function(function=function, protos=_Protos)
        found.append(
            {
                "name": info.name,
                "inputs": sorted(info.input_types),
                "outputs": sorted(info.output_types),
                "async": info.is_async,
            }
        )
    print(json.dumps(found))


if __name__ == "__main__":
    main()
