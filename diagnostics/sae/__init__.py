"""Sparse autoencoders: modules, SAELens-layout I/O, converters, training and evaluation."""

from diagnostics.sae.config import SaeConfig, SaeMetadata
from diagnostics.sae.io import load_sae, save_sae
from diagnostics.sae.modules import JumpReLUSAE, SparseAutoencoder, TopKSAE, build_sae

__all__ = [
    "JumpReLUSAE",
    "SaeConfig",
    "SaeMetadata",
    "SparseAutoencoder",
    "TopKSAE",
    "build_sae",
    "load_sae",
    "save_sae",
]
