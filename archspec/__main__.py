"""``python -m archspec`` (also what ``torchrun -m archspec train`` runs)."""

import sys

from archspec.cli import main

if __name__ == "__main__":
    sys.exit(main())
