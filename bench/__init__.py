"""Benchmarks of lasched beside kube-scheduler on the local control plane."""
