"""Where the project's own files and the local stack's state live.

The repository root is found from this file so that `vaxflow dev up` works from any working
directory of an editable install; everything a run writes goes under VAXFLOW_DEV_HOME (default
`var/dev` in the repository, ignored by git) or the shared download cache.
"""

from pathlib import Path
from typing import Final

REPO_ROOT: Final[Path] = Path(__file__).resolve().parents[2]
KAFKA_POM: Final[Path] = REPO_ROOT / "scripts" / "kafka" / "pom.xml"
MESH_SANDBOX_CONFIG: Final[Path] = REPO_ROOT / "config" / "mesh-sandbox"
DEFAULT_DEV_HOME: Final[Path] = REPO_ROOT / "var" / "dev"
DEFAULT_CACHE: Final[Path] = Path.home() / ".cache" / "vaxflow"
