"""The tamper-evident custody log: canonical JSON leaves, a Merkle tree, signed checkpoints."""
