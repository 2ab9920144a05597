"""Shared pytest setup.

The tests use small tensors, for which torch's intra-op thread pool costs far more than it saves; on a
busy machine (more runnable threads than cores) two threads made tiny models up to 100x slower.
TRAINACT_TEST_THREADS overrides the default of one thread.

On a CPU whose best vector unit is AVX2, oneDNN's AVX2 kernel for channels-last 1x1 stride-2 convolutions
corrupts memory (the compiled and channels-last tests' models have such convolutions): the harness's guard caps
oneDNN at AVX here, before any test runs a convolution, as `trainact compare` does at its start.
"""

import os

import torch

from trainact.harness.env import onednn_channels_last_guard

torch.set_num_threads(int(os.environ.get("TRAINACT_TEST_THREADS", "1")))
onednn_channels_last_guard(torch.device("cpu"), channels_last_convs=True)
