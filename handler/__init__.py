"""What a TorchServe worker imports: the petseg handler and the model code it needs (spec,
network, image geometry). The archive carries this package whole and nothing else from the
repository; training imports the model code from here, so both run the very same network.

protocol.py and spec.py import only the standard library: the web app and the operator's tools
read them without loading torch.
"""
