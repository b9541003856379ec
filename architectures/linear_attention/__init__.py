"""Linear attention and DeltaNet. Importing this package registers ``linear-attention``
and ``deltanet``.

``naive.py`` holds the loop references, ``chunked.py`` the chunk-parallel forms (and the
optional flash-linear-attention kernels), ``model.py`` the layers and adapters.
"""

from architectures.linear_attention.chunked import (
    causal_linear_attention,
    delta_rule,
    linear_attention,
)
from architectures.linear_attention.naive import delta_rule_ref, linear_attention_ref

from architectures.linear_attention import model  # noqa: E402,F401  isort: skip

__all__ = [
    "causal_linear_attention",
    "delta_rule",
    "delta_rule_ref",
    "linear_attention",
    "linear_attention_ref",
]
