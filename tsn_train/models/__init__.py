"""Models: backbones (BN-Inception, torchvision ResNet / Inception-v3) and the TSN wrapper."""
from .backbones import ARCHS, build_backbone
from .pretrained import PretrainedError, load_pretrained
from .tsn import TSN

__all__ = ["ARCHS", "TSN", "PretrainedError", "build_backbone", "load_pretrained"]
