"""`python -m shared.clients.cli`: the `hash7` console script without the script."""

from shared.clients.cli import main

main()
