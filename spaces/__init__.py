"""Built-in search-space families.

Each family registers its spaces (``@register_space``) when its module is imported. The table
below lets the registry import only the family a name needs: creating ``synthetic`` must not
import torch and timm in every Tune trial process.
"""

#: registered space name -> module that registers it
BUILTIN_SPACES = {
    "synthetic": "spaces.synthetic",
    "ofa_mbv3": "spaces.ofa_mbv3",
    "ofa_mbv3_cifar": "spaces.ofa_mbv3",
    "vit": "spaces.vit",
    "vit_cifar": "spaces.vit",
    "autoformer_tiny": "spaces.vit",
    "autoformer_small": "spaces.vit",
    "autoformer_base": "spaces.vit",
    "hybrid": "spaces.hybrid",
    "hybrid_cifar": "spaces.hybrid",
    "nb201": "spaces.nb201",
    "darts": "spaces.darts",
}
