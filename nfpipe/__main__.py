"""``python -m nfpipe``: the same as the ``nfpipe`` command."""
import sys

from nfpipe.cli.main import main

sys.exit(main())
