"""Images and data: image I/O, MATLAB-exact bicubic resizing, degradations, datasets, noise-level estimation."""
