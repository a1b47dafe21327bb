"""cmft: video-based visible-infrared person re-identification (CMFT, from raw video to ranked search).

Importing the top-level package is cheap: submodules (data, models, evaluation, ...) import torch
and friends only when they are used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
