"""S4D, the diagonal state-space model. Importing this package registers ``s4d``.

``kernel.py`` holds the math (Vandermonde kernel, FFT convolution, loop references);
``model.py`` the layer and the adapter.
"""

from architectures.s4d.kernel import (
    causal_conv_ref,
    causal_fft_conv,
    discretize,
    s4d_kernel,
    s4d_kernel_ref,
)

from architectures.s4d import model  # noqa: E402,F401  isort: skip

__all__ = ["causal_conv_ref", "causal_fft_conv", "discretize", "s4d_kernel", "s4d_kernel_ref"]
