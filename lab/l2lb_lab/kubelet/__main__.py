"""`python -m l2lb_lab.kubelet`: see main.py."""

import sys

from .main import main

sys.exit(main())
