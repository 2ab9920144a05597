"""Shared pytest setup.

The tests use small tensors, for which torch's intra-op thread pool costs far more than it saves; on a
busy machine (more runnable threads than cores) two threads made tiny models up to 100x slower.
TRAINACT_TEST_THREADS overrides the default of one thread.
"""

import os

import torch

torch.set_num_threads(int(os.environ.get("TRAINACT_TEST_THREADS", "1")))
