"""The auditor's use cases: verify the live station or a bundle, export a bundle, prove a clip."""
