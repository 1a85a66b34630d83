"""What several tests share: the repository and media paths, generated frames and clips, small
projects for stage runs, hostile inputs. Tests import from here, never from each other."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MEDIA = REPO.parent / "shared" / "media"
