"""Cells: harmonisation onto the contract, value scale, QC, embedding, identity."""
