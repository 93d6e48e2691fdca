"""regulator — routes calls to a French out-of-hours GP clinic (MMG) by its usage protocol."""

__version__ = "0.1.0"
