"""python -m orchestrator_migrate: the container pre-start step."""

import sys

from .cli import main

sys.exit(main())
