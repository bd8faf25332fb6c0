"""How a round's leader merges: Flower strategies run outside a server."""
