"""The Ray engine: a swarm of many simulated sites on a pool of Ray actors.

`ray_engine` runs the rounds; `site_host` is the actor that hosts many virtual
sites on one ledger replica; `timing` says how long each round would have
taken at real sites; `availability` says who is up in each round.
"""
