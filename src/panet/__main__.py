"""``python -m panet ...`` is the ``panet`` command (also what ``torchrun -m panet train ...`` runs)."""

import sys

from .cli import main

sys.exit(main())
