"""Models: the CMFT family by name (``create_model``, ``list_models``), its parts, and a training-free descriptor."""

from cmft.models.cmft import CMFT
from cmft.models.handcrafted import GreyMotionDescriptor
from cmft.models.registry import create_model, list_models, model_defaults
from cmft.models.temporal_shift import TemporalShift, temporal_shift

__all__ = ["CMFT", "GreyMotionDescriptor", "TemporalShift", "create_model", "list_models", "model_defaults", "temporal_shift"]
