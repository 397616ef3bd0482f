"""The networks: the pyramid-attention kernel and block, the residual blocks, PANet / PA-EDSR."""
