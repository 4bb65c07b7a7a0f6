"""`python -m l2lb_agent controller|speaker`: hands over to `l2lb_agent.cli.main`."""

import sys

from . import cli

sys.exit(cli.main())
