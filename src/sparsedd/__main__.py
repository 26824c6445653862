"""`python -m sparsedd` runs the command line."""

from sparsedd.cli.main import main

main()
