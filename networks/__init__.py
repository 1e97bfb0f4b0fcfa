"""Network architectures: Gaussian policy and prior heads, critic, information sets."""
