"""Where the team's curated real test data live (``../shared/reference`` beside the clone).

CI lays a copy of ``shared/`` beside the fresh clone; developers have it at
``/work/shared``. Tests that need it skip with a clear reason when neither exists.
"""

from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
_CANDIDATES = (_ROOT.parent / "shared" / "reference", Path("/work/shared/reference"))

#: The shared reference folder (may not exist; tests check ``.is_dir()``).
SHARED_REFERENCE: Path = next((p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[0])
