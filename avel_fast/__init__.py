"""avel_fast: fast, paper-faithful audio-visual event localization on pre-extracted AVE features.

Importing this package initialises neither CUDA nor Triton.
"""
__version__ = "0.1.0"
