"""Imagery sources: local rasters, STAC COGs, Earth Engine — one Protocol (pipeline.seams)."""
