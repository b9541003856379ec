"""The Legendre Memory Unit family: the LTI memory's math and the models that use it."""

from architectures.lmu.legendre import legendre_ab, zoh

__all__ = ["legendre_ab", "zoh"]
