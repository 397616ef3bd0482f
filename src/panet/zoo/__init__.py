"""The model zoo: presets, shipped weights and their cards, the weight file format and release conversion, and the one resolver that picks a network for a task and level."""
