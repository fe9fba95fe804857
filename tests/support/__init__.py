"""Helpers the tests share (no test module imports from another test module): test images,
the request counter, the handler's fake context, tiny training runs and running stacks."""
