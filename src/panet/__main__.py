"""``python -m panet ...`` is the ``panet`` command (also what ``torchrun -m panet train ...`` runs)."""

import sys

from panet.apps.cli import main

sys.exit(main())
