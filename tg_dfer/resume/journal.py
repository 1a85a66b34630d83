"""The journal of a run that has not completed yet: its finished entries, safe against SIGKILL."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from tg_dfer.io.atomic import atomic_path, write_text_atomic
from tg_dfer.io.h5 import json_default


class Journal:
    """The finished work of a run that has not completed yet: one small ``.npz`` file per numbered
    entry (faces: a clip; embed: the clips of one forward pass).

    HDF5 is not safe against SIGKILL (a kill during a metadata write can leave the whole file
    unreadable), so a run keeps its results here and writes the HDF5 file in one go at the
    end. Each entry's file is written under a temporary name and renamed, so a file that exists is
    complete. The ``fingerprint`` (params, inputs, code) is stored beside them: a journal left by
    a run with another fingerprint is discarded, never mixed in. Values are strings, numbers,
    arrays, or lists of bytes (encoded crops); nothing is pickled.
    """

    def __init__(self, folder: str | Path, fingerprint: dict[str, Any]):
        self.folder = Path(folder)
        meta = self.folder / "fingerprint.json"
        wanted = json.dumps(fingerprint, sort_keys=True, default=json_default)
        self.discarded = self.folder.is_dir() and not (meta.is_file() and meta.read_text() == wanted)
        if self.discarded:
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if not meta.is_file():
            write_text_atomic(meta, wanted)

    def _file(self, number: int) -> Path:
        return self.folder / f"{number:09d}.npz"

    def done(self) -> set[int]:
        """Numbers of the entries stored."""
        return {int(path.stem) for path in self.folder.glob("*.npz")}

    def put(self, number: int, values: dict[str, Any]) -> None:
        arrays = {}
        for name, value in values.items():
            if isinstance(value, list):  # encoded images: one flat buffer and their lengths
                arrays[f"{name}.bytes"] = np.frombuffer(b"".join(value), dtype=np.uint8)
                arrays[f"{name}.lengths"] = np.array([len(item) for item in value], dtype=np.int64)
            else:
                arrays[name] = np.asarray(value)
        with atomic_path(self._file(number)) as temporary, open(temporary, "wb") as handle:
            np.savez(handle, **arrays)

    def get(self, number: int) -> dict[str, Any]:
        values: dict[str, Any] = {}
        with np.load(self._file(number), allow_pickle=False) as stored:
            for name in stored.files:
                base, _, part = name.partition(".")
                if part == "lengths":
                    continue
                if part == "bytes":
                    data = stored[name].tobytes()
                    ends = np.cumsum(stored[f"{base}.lengths"])
                    values[base] = [data[end - length:end] for end, length in zip(ends, stored[f"{base}.lengths"])]
                else:
                    array = stored[name]
                    values[name] = array.item() if array.ndim == 0 else array
        return values

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
