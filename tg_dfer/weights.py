"""Weight files: where each one goes, where it is published, and the one function that finds it or
fetches it, verified, or fails with an error that says what to do.

What is verified is the hash its publisher gives:

* CLIP: OpenAI's download addresses carry the file's full SHA-256 as the folder before its name
  (``.../clip/models/<sha256>/ViT-B-32.pt``), the hash ``clip.load`` checks after downloading.
* face_alignment: the file names carry the first 10 hex digits of the file's SHA-256
  (``s3fd-619a316812.pth``), torch.hub's naming convention; face_alignment itself downloads them
  without checking. Only that prefix (40 bits) is published, so only that prefix is checked.

A fetch writes ``<file>.partial`` (:mod:`tg_dfer.io.atomic`), checks that it received every byte
the server announced and that the hash is the published one, and only then renames it into place:
a short or wrong file never gets the name a loader reads, and its partial file is deleted. A file
already in place is used as it is (nothing checks it again on every load; downstream files record
its SHA-256, and ``tg-dfer doctor`` says whether it is the published one).
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from tg_dfer.hashes import sha256_file
from tg_dfer.io.atomic import atomic_path

DOWNLOADS = ("auto", "never")  # auto: fetch a missing file on first use; never: only files already in place
BLOCK = 1 << 20
TIMEOUT = 60.0  # seconds without data before a fetch is given up
NAME_HASH = re.compile(r"-([0-9a-f]{8,64})\.")  # torch.hub's convention: name-<sha256 prefix>.ext


class WeightsError(Exception):
    """Weights that are missing, could not be fetched, are unreadable or not the ones a file was made with."""


@dataclass(frozen=True)
class WeightFile:
    """One weight file: what it is, where its loader looks for it, where and with which hash it is published."""

    name: str  # what it is, for messages: "CLIP weights for ViT-B/32"
    path: Path  # where the loader reads it
    url: str  # where it is published
    sha256: str  # the published SHA-256: all 64 hex digits, or the prefix the publisher gives
    source: str = ""  # how the user may know the file ("the file clip.load('ViT-B/32') downloads")

    @property
    def published(self) -> str:
        """The published hash in words."""
        if len(self.sha256) == 64:
            return f"SHA-256 {self.sha256}"
        return f"SHA-256 starting {self.sha256} (the prefix in the file name; no full hash is published)"

    def is_published(self, sha256: str) -> bool:
        """Whether a file of hash ``sha256`` is the published one (as far as the published hash says)."""
        return sha256.startswith(self.sha256)

    def place_by_hand(self) -> str:
        what = f" ({self.source})" if self.source else ""
        return f"Copy {self.path.name}{what} from {self.url} to {self.path}"


def url_sha256(url: str) -> str:
    """The SHA-256 an OpenAI-style address carries as the folder before the file name."""
    parts = url.rstrip("/").split("/")
    found = parts[-2].lower() if len(parts) >= 2 else ""
    if not re.fullmatch(r"[0-9a-f]{64}", found):
        raise WeightsError(f"{url}: no SHA-256 in the address (expected .../<64 hex digits>/<file name>)")
    return found


def name_sha256_prefix(url: str) -> str:
    """The SHA-256 prefix a file name carries by torch.hub's convention (``s3fd-619a316812.pth``)."""
    found = NAME_HASH.search(os.path.basename(url))
    if not found:
        raise WeightsError(f"{url}: the file name carries no hash (expected name-<hex digits>.ext)")
    return found.group(1)


def ensure_file(file: WeightFile, download: str) -> Path:
    """``file.path``, fetched first when it is missing and ``download`` is ``auto``.

    Raises :class:`WeightsError` naming the file, where it goes and (for a failed fetch) the
    address tried and why it failed; never anything else for a network, disk or hash problem.
    """
    if download not in DOWNLOADS:
        raise ValueError(f"download must be one of {', '.join(DOWNLOADS)}, got {download!r}")
    if file.path.is_file():
        return file.path
    if download == "never":
        raise WeightsError(f"{file.name} not found at {file.path}, and download is 'never'. "
                           f"{file.place_by_hand()}, or allow the download.")
    with _folder_lock(file.path.parent):
        if not file.path.is_file():  # else another process fetched it while this one waited
            fetch(file)
    return file.path


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (processes fetching the same file, e.g. torchrun ranks, take
    turns). The folder itself is locked, so no lock file is left behind."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = os.open(folder, os.O_RDONLY)
    except OSError as error:
        raise WeightsError(f"cannot write to {folder} ({error})") from error
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # releases the lock


def fetch(file: WeightFile) -> None:
    """Download ``file.url`` to ``file.path`` through ``<path>.partial``, verified; see the module docstring."""
    try:
        with atomic_path(file.path) as partial:
            with urllib.request.urlopen(file.url, timeout=TIMEOUT) as response, open(partial, "wb") as out:
                announced = response.headers.get("Content-Length")
                total = int(announced) if announced and announced.isdigit() else None
                digest, received = hashlib.sha256(), 0
                with tqdm(total=total, desc=f"fetching {file.path.name}", unit="B", unit_scale=True,
                          unit_divisor=1024, file=sys.stderr) as bar:
                    for block in iter(lambda: response.read(BLOCK), b""):
                        out.write(block)
                        digest.update(block)
                        received += len(block)
                        bar.update(len(block))
            if total is not None and received != total:
                raise WeightsError(f"{file.name}: fetching {file.url} stopped after {received} of {total} bytes; "
                                   f"nothing was kept. Try again, or {_lower_first(file.place_by_hand())}.")
            found = digest.hexdigest()
            if not file.is_published(found):
                raise WeightsError(f"{file.name}: the file fetched from {file.url} has SHA-256 {found}, but the "
                                   f"published one is {file.sha256}: it was deleted, not used. "
                                   f"{file.place_by_hand()} once you have the right file.")
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise WeightsError(f"{file.name} not found at {file.path}, and fetching {file.url} failed "
                           f"({_reason(error)}). {file.place_by_hand()}.") from error


def _reason(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def file_state(file: WeightFile) -> dict:
    """What is at ``file.path``: present or not, and when present its SHA-256 and whether it is the published one."""
    state = {"name": file.name, "path": str(file.path), "url": file.url, "published_sha256": file.sha256,
             "present": file.path.is_file(), "sha256": None, "is_published": None}
    if state["present"]:
        state["sha256"] = sha256_file(file.path)
        state["is_published"] = file.is_published(state["sha256"])
    return state
