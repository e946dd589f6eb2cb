"""Consumers: a queue attached to a worker pool that calls a handler and settles each delivery."""
