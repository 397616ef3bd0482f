"""Running a network: tiling (and the release's chop), restore, the model descriptor, attention maps, export."""
