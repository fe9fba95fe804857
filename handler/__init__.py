"""Serving half of petseg: the TorchServe handler, its image functions, archive and server tools."""
