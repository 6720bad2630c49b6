"""kickstart: IMPALA with kickstarting and Mix & Match, in PyTorch."""

__version__ = "0.1.0"
