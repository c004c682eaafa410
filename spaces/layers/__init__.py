"""The shared building blocks of the search-space families, one of each.

- :mod:`~spaces.layers.slicing`: ``leading``, the leading slice every elastic layer takes.
- :mod:`~spaces.layers.batchnorm`: ``ElasticBatchNorm2d``.
- :mod:`~spaces.layers.mbconv` / :mod:`~spaces.layers.elastic_mbconv`: the static MBConv block
  (OFA MobileNetV3 and the hybrid space's convolution) and its elastic counterpart.
- :mod:`~spaces.layers.transformer`: the elastic pre-norm transformer block (ViT and hybrid) and
  its static timm counterpart.
- :mod:`~spaces.layers.export`: the one export style (static config + sliced state dict).

Every elastic layer is an :class:`ElasticLayer`: for a setting it gives the config of its
static layer and the sliced weights, and ``export(**setting)`` builds that layer.
"""
from spaces.layers.batchnorm import ElasticBatchNorm2d
from spaces.layers.elastic_mbconv import (ElasticConv2d, ElasticDepthwiseConv2d, ElasticMBConv,
                                          ElasticSqueezeExcite)
from spaces.layers.export import ElasticLayer, build_and_load, prefixed
from spaces.layers.mbconv import (BlockGeometry, MBConv, SqueezeExcite, conv_bn_act,
                                  expanded_channels, make_divisible)
from spaces.layers.slicing import leading

__all__ = ["BlockGeometry", "ElasticBatchNorm2d", "ElasticConv2d", "ElasticDepthwiseConv2d",
           "ElasticLayer", "ElasticMBConv", "ElasticSqueezeExcite", "MBConv", "SqueezeExcite",
           "build_and_load", "conv_bn_act", "expanded_channels", "leading", "make_divisible",
           "prefixed"]
