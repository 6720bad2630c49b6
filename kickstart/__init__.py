"""kickstart: IMPALA with kickstarting and Mix & Match, in PyTorch."""

import os as _os

# Back PyTorch's large CPU tensors (>= 2 MiB) with transparent huge pages. glibc hands allocations
# above 32 MiB (the most M_MMAP_THRESHOLD allows) straight to mmap and back on free, so every
# learner update maps its big activations afresh: measured ~59,000 page faults per update of the
# Nature CNN over a [21, 32] Atari batch, against ~4,000 with this, and a ~20% faster update.
# Read by torch at its first allocation, so it is set before torch is imported, and actor processes
# inherit it. A machine whose kernel has THP off ignores it; a value the user set is kept.
_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
