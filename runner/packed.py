"""The names inside a file ``archspec data pack`` writes, shared by its writer (runner.pack) and its reader
(runner.data): the images, and beside them the optional labels and condition images of a conditional set."""

from __future__ import annotations

# Labels and inputs came later without a new version: they sit beside the images, which are as they were.
FORMAT_VERSION = 1
IMAGES = "images"  # uint8 (N, S, S, C): the images; of a paired set, the targets (pix2pix's B)
LABELS = "labels"  # int64 (N,): a class index per image
CLASS_NAMES = "class_names"  # attribute of LABELS: the K class names, a string array
INPUTS = "inputs"  # uint8 (N, S, S, Ci): the condition image of each pair (pix2pix's A)
