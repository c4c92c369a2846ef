"""`python -m murmur.deploy {deploy,rollback,logs,status} HOST…`: see deploy/tool.py and deploy/README.md."""

import sys

from .tool import main

sys.exit(main())
