"""Captions from OSM tags: rules as data (``data/*.csv``), assembly, and the multi-object overlay.

- :mod:`captioning.assemble`: ``caption_single``, ``caption_multi``, ``phrase``;
- :mod:`captioning.overlay`: ``Overlay(objects).around(obj, tile, max_n)``;
- :mod:`captioning.rules`: loading and validating the rule files;
- :mod:`captioning.cli`: ``skyscript caption``.
"""
