"""`python -m sparsedd` runs the command line."""

from sparsedd.cli import main

main()
