"""``python -m cmft`` (and ``torchrun -m cmft train ...``) runs the console script."""

from cmft.cli import main

main()
