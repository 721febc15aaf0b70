"""`python -m genlab ...` works like `genlab ...`."""

from genlab.cli import main

main()
