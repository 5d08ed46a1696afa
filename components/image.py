"""The one component image every compiled component runs in.

Stamped into each component at definition time; `MODELPRESS_IMAGE` overrides
it at compile time (for a private registry). The image carries modelpress
and its pinned dependencies, so nothing is pip-installed at run time.
"""

import os

from modelpress import __version__

IMAGE_REPOSITORY = "ghcr.io/modelpress/modelpress"
IMAGE = os.environ.get("MODELPRESS_IMAGE") or f"{IMAGE_REPOSITORY}:{__version__}"
