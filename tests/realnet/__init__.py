"""Tests on real kernel networking: node namespaces with per-direction delays between them."""
