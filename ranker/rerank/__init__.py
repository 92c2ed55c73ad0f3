"""Second stage: the cross-encoder we fine-tune, on torch or onnxruntime, chosen from a registry of runtimes."""
