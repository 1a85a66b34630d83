"""What every HDF5 contract file shares: the schema check on opening, string and JSON attributes,
row access, and the atomic writer.

Every file carries a ``schema`` root attribute such as ``tg-dfer/features/1``; a reader refuses a
file of another kind or version with an error that names the file, what it holds and what was
expected. Writers fill a temporary file beside the target and rename it into place when closed
without error, so a later stage never reads a half-written file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from tg_dfer.io.atomic import commit, partial_path

STRING = h5py.string_dtype("utf-8")


BYTES = h5py.vlen_dtype(np.uint8)


class SchemaError(Exception):
    """A file that is missing, of the wrong kind, or of an unsupported schema version."""


# schema -> the earlier versions of it that every reader still reads (registered by schema_with_earlier).
_EARLIER: dict[str, tuple[str, ...]] = {}


def schema_with_earlier(schema: str, *earlier: str) -> str:
    """``schema``, registered so that :func:`open_checked` also opens files of the ``earlier``
    versions (each later one only added attributes, which readers treat as absent)."""
    _EARLIER[schema] = earlier
    return schema


def open_checked(path: str | Path, expected: str) -> h5py.File:
    """Open an HDF5 file for reading after checking that its ``schema`` attribute is ``expected``
    (or an earlier version registered with :func:`schema_with_earlier`)."""
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"{path}: no such file (expected a {expected} file; run the stage that writes it)")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise SchemaError(f"{path}: not a readable HDF5 file ({error})") from error
    found = handle.attrs.get("schema")
    if found != expected and found not in _EARLIER.get(expected, ()):
        handle.close()
        kind, _, version = expected.rpartition("/")
        if isinstance(found, str) and found.rpartition("/")[0] == kind:
            raise SchemaError(
                f"{path}: schema {found} is not supported (this version reads {expected}); "
                "re-run the stage that wrote it"
            )
        raise SchemaError(f"{path}: holds schema {found!r}, expected {expected}")
    return handle


def decode_strings(values: np.ndarray) -> list[str]:
    """An HDF5 string dataset's values (bytes or str) as str."""
    return [value.decode("utf-8") if isinstance(value, bytes) else str(value) for value in values]


def set_attrs(handle: h5py.File, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        handle.attrs[key] = json.dumps(value, default=json_default) if isinstance(value, (dict, list, tuple)) else value


def json_default(value: Any) -> Any:
    """JSON for the numpy scalars and arrays that attributes read back from HDF5 come as."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} cannot be stored as a JSON attribute")


def json_values(attrs: dict[str, Any]) -> dict[str, str]:
    return {key: json.dumps(value, default=json_default) for key, value in attrs.items()}


def read_row(handle: h5py.File, row: int) -> dict[str, Any]:
    """Every dataset's value at ``row`` of a faces or features file: strings as str, crops as bytes."""
    values: dict[str, Any] = {}
    for name, dataset in handle.items():
        value = dataset[row]
        if h5py.check_string_dtype(dataset.dtype):
            value = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        elif h5py.check_vlen_dtype(dataset.dtype):
            value = [bytes(item) for item in value]
        values[name] = value
    return values


class AtomicH5:
    """An HDF5 file written under a temporary name and renamed into place on a clean close."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.temporary = partial_path(self.path)
        self.handle = h5py.File(self.temporary, "w")

    def close(self) -> None:
        self.handle.close()
        commit(self.temporary, self.path)

    def abort(self) -> None:
        self.handle.close()
        self.temporary.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
