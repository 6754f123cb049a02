"""``python -m candela.cli``: the same as the ``candela`` command."""

import sys

from candela.cli.app import main

sys.exit(main())
