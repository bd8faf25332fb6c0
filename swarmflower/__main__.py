"""`python -m swarmflower` runs the command line."""

from swarmflower.cli import main

main()
