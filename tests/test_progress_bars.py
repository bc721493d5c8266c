"""Progress bars are plain tqdm: tqdm.auto picks the widget bar in a notebook kernel and
warns ("IProgress not found") in every report made without ipywidgets."""

from __future__ import annotations

import tqdm.std

import ogkit.audit
import ogkit.infer
import ogkit.verify


def test_library_bars_are_plain_tqdm():
    for module in (ogkit.infer, ogkit.verify, ogkit.audit):
        assert module.tqdm is tqdm.std.tqdm, module.__name__
