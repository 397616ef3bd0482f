"""Training: the config, the loop, its plots and the weights card."""
