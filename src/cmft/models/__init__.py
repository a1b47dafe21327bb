"""Models: the CMFT family (later issues) and a training-free descriptor."""

from cmft.models.handcrafted import GreyMotionDescriptor

__all__ = ["GreyMotionDescriptor"]
