"""``python -m oodbench``: the same command line as ``oodbench``."""
import sys

from .cli import main

sys.exit(main())
