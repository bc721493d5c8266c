"""Zero-knowledge proofs of inference with EZKL (docs/zk.md)."""
