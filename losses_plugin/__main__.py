"""``python -m losses_plugin train|test -opt FILE.yml ...`` (what ``torchrun -m`` runs)."""
import sys

from losses_plugin.cli import main

sys.exit(main())
