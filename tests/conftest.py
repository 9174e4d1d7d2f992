"""Test-wide settings: one torch thread per parallel worker (two threads slow down sharply beside a busy core)."""

from __future__ import annotations

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
