"""SatCLIP-style image–location pairs: the S2-100K-style sampler (``skyscript satclip sample``)."""
