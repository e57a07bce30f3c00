"""OSM sources: files (pyosmium) and Overpass (overpy), yielding the same records."""
